package coordhttp

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/polystore/polystore/coord"
)

//go:embed templates/*.html templates/style.css
var files embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"path": url.PathEscape,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000")
	},
}).ParseFS(files, "templates/*.html"))

// Options configures the console.
type Options struct {
	// Authorize is called on every request and says who makes it; a
	// request it refuses (ok false) gets 401 with an empty body. who is
	// recorded in the saga's history for Retry and Resolve. Required.
	Authorize func(r *http.Request) (who string, ok bool)

	// Challenge, when set, is sent as the WWW-Authenticate header of every
	// 401, for example `Basic realm="sagas"`, so that a browser asks for
	// the credentials that Authorize reads with r.BasicAuth(). Default:
	// none (a bearer token or a session of the service's own).
	Challenge string

	// ReadOnly removes Retry and Resolve: their endpoints answer 403 and
	// the console shows no buttons.
	ReadOnly bool

	// StuckAfter is the threshold of the stuck view (coord.Filter.Stuck):
	// running or compensating sagas whose lease expired longer ago. Zero:
	// 5 minutes. Negative is invalid.
	StuckAfter time.Duration
}

// ErrInvalid reports invalid Options given to New.
var ErrInvalid = errors.New("coordhttp: invalid")

type handler struct {
	c    *coord.Coordinator
	opts Options
	mux  *http.ServeMux
	csrf *http.CrossOriginProtection
}

// New returns the console of c. It returns an error wrapping ErrInvalid for
// a nil coordinator, a nil Options.Authorize or a negative StuckAfter.
func New(c *coord.Coordinator, opts Options) (http.Handler, error) {
	switch {
	case c == nil:
		return nil, fmt.Errorf("%w: nil Coordinator", ErrInvalid)
	case opts.Authorize == nil:
		return nil, fmt.Errorf("%w: nil Options.Authorize (the console must not be open to anyone)", ErrInvalid)
	case opts.StuckAfter < 0:
		return nil, fmt.Errorf("%w: negative Options.StuckAfter %v", ErrInvalid, opts.StuckAfter)
	case opts.StuckAfter == 0:
		opts.StuckAfter = 5 * time.Minute
	}
	h := &handler{c: c, opts: opts, mux: http.NewServeMux(), csrf: http.NewCrossOriginProtection()}
	h.mux.HandleFunc("GET /api/sagas", h.apiList)
	h.mux.HandleFunc("GET /api/sagas/{id}", h.apiGet)
	h.mux.HandleFunc("POST /api/sagas/{id}/retry", h.apiAction(actRetry))
	h.mux.HandleFunc("POST /api/sagas/{id}/resolve", h.apiAction(actResolve))
	h.mux.HandleFunc("GET /{$}", h.page)
	h.mux.HandleFunc("GET /sagas/{id}", h.sagaPage)
	h.mux.HandleFunc("POST /sagas/{id}/retry", h.formAction(actRetry))
	h.mux.HandleFunc("POST /sagas/{id}/resolve", h.formAction(actResolve))
	h.mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		data, _ := files.ReadFile("templates/style.css")
		_, _ = w.Write(data)
	})
	return h, nil
}

// ServeHTTP authorises the request, refuses cross-origin state changes,
// then serves it.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	who, ok := h.opts.Authorize(r)
	if !ok {
		if h.opts.Challenge != "" {
			w.Header().Set("WWW-Authenticate", h.opts.Challenge)
		}
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if err := h.csrf.Check(r); err != nil {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost && h.opts.ReadOnly {
		http.Error(w, "the console is read-only", http.StatusForbidden)
		return
	}
	h.mux.ServeHTTP(w, r.WithContext(withWho(r.Context(), who)))
}

type action int

const (
	actRetry action = iota
	actResolve
)

func (a action) String() string {
	if a == actRetry {
		return "retry"
	}
	return "resolve"
}

// do runs the action on the saga id for who; err is nil when it took
// effect (the saga's own outcome is in info and outcome).
func (h *handler) do(r *http.Request, a action, id, why string) (info coord.Info, outcome, err error) {
	who := whoFrom(r.Context())
	switch a {
	case actRetry:
		info, outcome = h.c.Retry(r.Context(), id, who, why)
		if errors.Is(outcome, coord.ErrWrongStatus) || errors.Is(outcome, coord.ErrNotFound) || errors.Is(outcome, coord.ErrInvalid) && info.ID == "" {
			return info, nil, outcome
		}
		return info, outcome, nil
	default:
		info, err = h.c.Resolve(r.Context(), id, who, why)
		return info, nil, err
	}
}

// status is the HTTP status of an action's or a read's error.
func status(err error) int {
	switch {
	case errors.Is(err, coord.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, coord.ErrWrongStatus):
		return http.StatusConflict
	case errors.Is(err, coord.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type apiError struct {
	Error string `json:"error"`
}

func (h *handler) apiList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err == nil {
		var p coord.Page
		if p, err = h.c.List(r.Context(), f); err == nil {
			writeJSON(w, http.StatusOK, Page{Sagas: sagasOf(p.Sagas), Next: p.Next})
			return
		}
	}
	writeJSON(w, status(err), apiError{err.Error()})
}

// parseFilter reads a coord.Filter from the query of api/sagas.
func parseFilter(q url.Values) (coord.Filter, error) {
	var f coord.Filter
	for _, s := range q["status"] {
		f.Statuses = append(f.Statuses, coord.Status(s))
	}
	f.Name = q.Get("name")
	f.After = q.Get("after")
	var err error
	parseTime := func(key string, dst *time.Time) {
		if v := q.Get(key); v != "" && err == nil {
			if *dst, err = time.Parse(time.RFC3339Nano, v); err != nil {
				err = fmt.Errorf("%w: %s: %w", coord.ErrInvalid, key, err)
			}
		}
	}
	parseTime("from", &f.CreatedFrom)
	parseTime("before", &f.CreatedBefore)
	if v := q.Get("stuck"); v != "" && err == nil {
		if f.Stuck, err = time.ParseDuration(v); err != nil {
			err = fmt.Errorf("%w: stuck: %w", coord.ErrInvalid, err)
		}
	}
	if v := q.Get("limit"); v != "" && err == nil {
		if f.Limit, err = strconv.Atoi(v); err != nil {
			err = fmt.Errorf("%w: limit: %w", coord.ErrInvalid, err)
		}
	}
	return f, err
}

// SagaView is the answer of GET api/sagas/{id}: a saga, its timeline
// (oldest first) and its state as stored (coord.Coordinator.StoredState:
// sealed, with a coord.Sealer).
type SagaView struct {
	Saga    Saga            `json:"saga"`
	History []Event         `json:"history"`
	State   json.RawMessage `json:"state"`
}

func (h *handler) view(r *http.Request, id string) (SagaView, error) {
	info, err := h.c.Get(r.Context(), id)
	if err != nil {
		return SagaView{}, err
	}
	evs, err := h.c.History(r.Context(), id)
	if err != nil {
		return SagaView{}, err
	}
	state, err := h.c.StoredState(r.Context(), id)
	if err != nil {
		return SagaView{}, err
	}
	return SagaView{Saga: sagaOf(info), History: eventsOf(evs), State: state}, nil
}

func (h *handler) apiGet(w http.ResponseWriter, r *http.Request) {
	v, err := h.view(r, r.PathValue("id"))
	if err != nil {
		writeJSON(w, status(err), apiError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ActionResult is the answer of a retry or resolve that took effect: the
// saga as it ended, and the saga's own outcome when it is not a success (a
// Retry whose compensation failed again: coord.ErrFailed's text).
type ActionResult struct {
	Saga    Saga   `json:"saga"`
	Outcome string `json:"outcome,omitempty"`
}

func (h *handler) apiAction(a action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Why string `json:"why"`
		}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
				writeJSON(w, http.StatusBadRequest, apiError{"coordhttp: the body is not a JSON object {\"why\": ...}: nothing done"})
				return
			}
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			body.Why = r.PostFormValue("why")
		}
		info, outcome, err := h.do(r, a, r.PathValue("id"), body.Why)
		if err != nil {
			writeJSON(w, status(err), apiError{err.Error()})
			return
		}
		res := ActionResult{Saga: sagaOf(info)}
		if outcome != nil {
			res.Outcome = outcome.Error()
		}
		writeJSON(w, http.StatusOK, res)
	}
}

func (h *handler) render(w http.ResponseWriter, name string, code int, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		fmt.Fprintf(w, "<p>coordhttp: rendering failed: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

type page struct {
	Root     string // relative path to the console's root
	Who      string
	ReadOnly bool
	Error    string
}

// statusOrder is the order of the counts on the console.
var statusOrder = []coord.Status{coord.StatusFailed, coord.StatusDead, coord.StatusRunning, coord.StatusCompensating,
	coord.StatusSucceeded, coord.StatusCompensated, coord.StatusResolved}

type count struct {
	Status coord.Status
	N      int64
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	data := struct {
		page
		Counts     []count
		NeedPerson []Saga
		MoreNeed   bool
		Stuck      []Saga
		MoreStuck  bool
		StuckAfter time.Duration
		Recent     []Saga
	}{page: h.pageOf(r, ""), StuckAfter: h.opts.StuckAfter}
	err := func() error {
		counts, err := h.c.Counts(r.Context())
		if err != nil {
			return err
		}
		for _, s := range statusOrder {
			data.Counts = append(data.Counts, count{s, counts[s]})
		}
		need, err := h.c.List(r.Context(), coord.Filter{Statuses: []coord.Status{coord.StatusFailed, coord.StatusDead}, Limit: 100})
		if err != nil {
			return err
		}
		data.NeedPerson, data.MoreNeed = sagasOf(need.Sagas), need.Next != ""
		stuck, err := h.c.List(r.Context(), coord.Filter{Statuses: []coord.Status{coord.StatusRunning, coord.StatusCompensating},
			Stuck: h.opts.StuckAfter, Limit: 100})
		if err != nil {
			return err
		}
		data.Stuck, data.MoreStuck = sagasOf(stuck.Sagas), stuck.Next != ""
		recent, err := h.c.List(r.Context(), coord.Filter{Limit: 20})
		if err != nil {
			return err
		}
		data.Recent = sagasOf(recent.Sagas)
		return nil
	}()
	if err != nil {
		data.Error = err.Error()
		h.render(w, "index.html", status(err), data)
		return
	}
	h.render(w, "index.html", http.StatusOK, data)
}

func (h *handler) pageOf(r *http.Request, root string) page {
	return page{Root: root, Who: whoFrom(r.Context()), ReadOnly: h.opts.ReadOnly}
}

func (h *handler) sagaPage(w http.ResponseWriter, r *http.Request) {
	data := struct {
		page
		SagaView
		StateText string
		CanAct    bool
		Message   string
	}{page: h.pageOf(r, "../"), Message: r.URL.Query().Get("msg")}
	v, err := h.view(r, r.PathValue("id"))
	if err != nil {
		data.Error = err.Error()
		h.render(w, "saga.html", status(err), data)
		return
	}
	data.SagaView = v
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, v.State, "", "  "); err == nil {
		data.StateText = pretty.String()
	} else {
		data.StateText = string(v.State)
	}
	data.CanAct = !h.opts.ReadOnly && (v.Saga.Status == coord.StatusFailed || v.Saga.Status == coord.StatusDead)
	h.render(w, "saga.html", http.StatusOK, data)
}

func (h *handler) formAction(a action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		id := r.PathValue("id")
		_, outcome, err := h.do(r, a, id, r.PostFormValue("why"))
		msg := a.String() + ": done"
		switch {
		case err != nil:
			msg = a.String() + " refused: " + err.Error()
		case outcome != nil:
			msg = a.String() + ": the saga ran, and " + outcome.Error()
		}
		// Back to the saga's page (post/redirect/get), relative to this URL:
		// http.Redirect would make it absolute from the path left by
		// http.StripPrefix, losing the mount point.
		w.Header().Set("Location", "../"+url.PathEscape(id)+"?msg="+url.QueryEscape(msg))
		w.WriteHeader(http.StatusSeeOther)
	}
}
