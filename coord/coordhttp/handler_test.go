package coordhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/coord/coordhttp"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const token = "t0ken-for-tests"

// bearer is the tests' Authorize: the operator "ops" with the token.
func bearer(r *http.Request) (string, bool) {
	return "ops", r.Header.Get("Authorization") == "Bearer "+token
}

type order struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// env is a coordinator with a two-step saga whose second step and its
// compensation fail while the switches say so, and the console on it,
// mounted under /admin/ as a service would.
type env struct {
	pool      *pgxpool.Pool
	c         *coord.Coordinator
	h         *coord.Handle[order]
	srv       *httptest.Server
	failStep  atomic.Bool
	failComp  atomic.Bool
	compCalls atomic.Int64
}

var errDown = errors.New("payments service down")

func newEnv(t *testing.T, opts coordhttp.Options, copts coord.Options) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{pool: servicetest.Postgres(t)}
	_, err := e.pool.Exec(ctx, `create table orders (id text primary key)`)
	require.NoError(t, err)
	e.c, err = coord.New(ctx, e.pool, copts)
	require.NoError(t, err)
	fast := coord.RetryPolicy{Attempts: 2, Backoff: 1e6, MaxBackoff: 2e6}
	e.h, err = coord.Register(e.c, coord.Define("order",
		coord.Step[order]{
			Name: "insert-order",
			TxAction: func(ctx context.Context, tx coord.Tx, s *order) error {
				_, err := tx.Exec(ctx, `insert into orders (id) values ($1)`, s.ID)
				return err
			},
			TxCompensate: func(ctx context.Context, tx coord.Tx, s *order) error {
				_, err := tx.Exec(ctx, `delete from orders where id = $1`, s.ID)
				return err
			},
			Retry: fast,
		},
		coord.Step[order]{
			Name: "charge",
			Action: func(ctx context.Context, s *order) error {
				if e.failStep.Load() {
					return errDown
				}
				return nil
			},
			Compensate: func(ctx context.Context, s *order) error {
				e.compCalls.Add(1)
				if e.failComp.Load() {
					return errDown
				}
				return nil
			},
			Retry: fast,
		},
		coord.Step[order]{Name: "confirm", Kind: coord.Pivot, Action: func(context.Context, *order) error { return nil }},
	))
	require.NoError(t, err)
	if opts.Authorize == nil {
		opts.Authorize = bearer
	}
	h, err := coordhttp.New(e.c, opts)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// failed runs the saga id into the failed status and clears the faults.
func (e *env) failed(t *testing.T, id string) {
	t.Helper()
	e.failStep.Store(true)
	e.failComp.Store(true)
	_, err := e.h.Run(context.Background(), id, &order{ID: id, Secret: "card-4111-secret"})
	require.ErrorIs(t, err, coord.ErrFailed)
	e.failStep.Store(false)
	e.failComp.Store(false)
}

type response struct {
	code int
	body string
	hdr  http.Header
}

// do sends a request to the console; header pairs follow.
func (e *env) do(t *testing.T, method, path string, body io.Reader, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+"/admin/"+path, body)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{resp.StatusCode, string(data), resp.Header}
}

var auth = []string{"Authorization", "Bearer " + token}

func withAuth(h ...string) []string { return append(append([]string{}, auth...), h...) }

func form(why string) io.Reader { return strings.NewReader(url.Values{"why": {why}}.Encode()) }

var formType = []string{"Content-Type", "application/x-www-form-urlencoded"}

func TestNew_RefusesInvalidOptions(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	_, err := coordhttp.New(e.c, coordhttp.Options{})
	assert.ErrorIs(t, err, coordhttp.ErrInvalid, "no Authorize")
	_, err = coordhttp.New(nil, coordhttp.Options{Authorize: bearer})
	assert.ErrorIs(t, err, coordhttp.ErrInvalid)
	_, err = coordhttp.New(e.c, coordhttp.Options{Authorize: bearer, StuckAfter: -1})
	assert.ErrorIs(t, err, coordhttp.ErrInvalid)
}

func TestConsole_RequestsWithoutAuthorisationGetNothing(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	for _, tt := range []struct{ method, path string }{
		{"GET", ""}, {"GET", "style.css"}, {"GET", "sagas/o1"}, {"GET", "api/sagas"}, {"GET", "api/sagas/o1"},
		{"POST", "api/sagas/o1/retry"}, {"POST", "api/sagas/o1/resolve"}, {"POST", "sagas/o1/retry"}, {"GET", "nothing-here"},
	} {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}} {
			r := e.do(t, tt.method, tt.path, form("x"), append(hdr, formType...)...)
			assert.Equal(t, http.StatusUnauthorized, r.code, "%s %s %v", tt.method, tt.path, hdr)
			assert.Empty(t, r.body, "%s %s", tt.method, tt.path)
		}
	}
	info, err := e.c.Get(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, coord.StatusFailed, info.Status)
}

func TestConsole_RefusesCrossOriginStateChanges(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	for name, hdr := range map[string][]string{
		"Sec-Fetch-Site cross-site": {"Sec-Fetch-Site", "cross-site"},
		"foreign Origin":            {"Origin", "https://evil.example"},
	} {
		for _, path := range []string{"api/sagas/o1/retry", "api/sagas/o1/resolve", "sagas/o1/retry", "sagas/o1/resolve"} {
			r := e.do(t, "POST", path, form("csrf"), withAuth(append(hdr, formType...)...)...)
			assert.Equal(t, http.StatusForbidden, r.code, "%s %s", name, path)
		}
	}
	info, err := e.c.Get(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, coord.StatusFailed, info.Status, "nothing done")
	assert.Equal(t, int64(2), e.compCalls.Load())

	r := e.do(t, "POST", "sagas/o1/resolve", form("same origin"), withAuth(append(formType, "Sec-Fetch-Site", "same-origin")...)...)
	assert.Equal(t, http.StatusSeeOther, r.code, "a same-origin form post passes")
}

func TestConsole_StateChangesArePostOnly(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	for _, path := range []string{"api/sagas/o1/retry", "api/sagas/o1/resolve", "sagas/o1/retry", "sagas/o1/resolve"} {
		r := e.do(t, "GET", path, nil, auth...)
		assert.Equal(t, http.StatusMethodNotAllowed, r.code, path)
	}
	info, err := e.c.Get(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, coord.StatusFailed, info.Status)
}

func TestConsole_ReadOnlyShowsButRefusesActions(t *testing.T) {
	e := newEnv(t, coordhttp.Options{ReadOnly: true}, coord.Options{})
	e.failed(t, "o1")
	for _, path := range []string{"api/sagas/o1/retry", "api/sagas/o1/resolve", "sagas/o1/retry"} {
		r := e.do(t, "POST", path, form("x"), withAuth(formType...)...)
		assert.Equal(t, http.StatusForbidden, r.code, path)
	}
	page := e.do(t, "GET", "sagas/o1", nil, auth...)
	require.Equal(t, http.StatusOK, page.code)
	assert.Contains(t, page.body, "o1")
	assert.NotContains(t, page.body, "<form")
	assert.Contains(t, page.body, "read-only")
	info, err := e.c.Get(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, coord.StatusFailed, info.Status)
}

func TestAPI_ListsSagas(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	_, err := e.h.Run(context.Background(), "o2", &order{ID: "o2"})
	require.NoError(t, err)

	r := e.do(t, "GET", "api/sagas?status=failed", nil, auth...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var page coordhttp.Page
	require.NoError(t, json.Unmarshal([]byte(r.body), &page))
	require.Len(t, page.Sagas, 1)
	assert.Equal(t, "o1", page.Sagas[0].ID)

	r = e.do(t, "GET", "api/sagas?limit=1", nil, auth...)
	require.Equal(t, http.StatusOK, r.code)
	require.NoError(t, json.Unmarshal([]byte(r.body), &page))
	require.Len(t, page.Sagas, 1)
	require.NotEmpty(t, page.Next)
	r = e.do(t, "GET", "api/sagas?limit=1&after="+url.QueryEscape(page.Next), nil, auth...)
	require.Equal(t, http.StatusOK, r.code)
	var second coordhttp.Page
	require.NoError(t, json.Unmarshal([]byte(r.body), &second))
	require.Len(t, second.Sagas, 1)
	assert.NotEqual(t, page.Sagas[0].ID, second.Sagas[0].ID)

	for _, q := range []string{"status=lost", "limit=x", "limit=-1", "stuck=soon", "from=yesterday", "after=zzz"} {
		r := e.do(t, "GET", "api/sagas?"+q, nil, auth...)
		assert.Equal(t, http.StatusBadRequest, r.code, q)
		assert.Contains(t, r.body, `"error"`, q)
	}
}

func TestAPI_GetsASagaWithItsTimeline(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	r := e.do(t, "GET", "api/sagas/o1", nil, auth...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var v coordhttp.SagaView
	require.NoError(t, json.Unmarshal([]byte(r.body), &v))
	assert.Equal(t, coord.StatusFailed, v.Saga.Status)
	require.NotEmpty(t, v.History)
	assert.Equal(t, coord.EventCompensationFailed, v.History[len(v.History)-1].Kind)
	assert.Contains(t, v.History[len(v.History)-1].Error, errDown.Error())
	assert.JSONEq(t, `{"id":"o1","secret":"card-4111-secret"}`, string(v.State), "no codec: the state as stored")

	assert.Equal(t, http.StatusNotFound, e.do(t, "GET", "api/sagas/nope", nil, auth...).code)
}

func TestAPI_RetryRunsTheSagaOnceAndRecordsWho(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	r := e.do(t, "POST", "api/sagas/o1/retry", strings.NewReader(`{"why":"payments are back"}`), withAuth("Content-Type", "application/json")...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var res coordhttp.ActionResult
	require.NoError(t, json.Unmarshal([]byte(r.body), &res))
	assert.Equal(t, coord.StatusCompensated, res.Saga.Status)
	assert.Empty(t, res.Outcome)
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `select count(*) from orders`).Scan(&n))
	assert.Zero(t, n, "the order row was compensated")

	r = e.do(t, "POST", "api/sagas/o1/retry", strings.NewReader(`{"why":"again"}`), withAuth("Content-Type", "application/json")...)
	assert.Equal(t, http.StatusConflict, r.code, "a compensated saga cannot be retried")
	assert.Contains(t, r.body, "compensated")
	assert.Equal(t, http.StatusNotFound, e.do(t, "POST", "api/sagas/nope/retry", form("x"), withAuth(formType...)...).code)

	evs, err := e.c.History(context.Background(), "o1")
	require.NoError(t, err)
	var retried []coord.Event
	for _, ev := range evs {
		if ev.Kind == coord.EventRetried {
			retried = append(retried, ev)
		}
	}
	require.Len(t, retried, 1)
	assert.Equal(t, "ops", retried[0].Actor)
	assert.Equal(t, "payments are back", retried[0].Reason)
}

func TestAPI_RetryWhoseCompensationFailsAgainReportsTheOutcome(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	e.failComp.Store(true)
	r := e.do(t, "POST", "api/sagas/o1/retry", form("try"), withAuth(formType...)...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Contains(t, r.body, `"status":"failed"`)
	assert.Contains(t, r.body, "payments service down")
}

func TestAPI_ResolveEndsTheSagaResolved(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	r := e.do(t, "POST", "api/sagas/o1/resolve", form("refunded by hand"), withAuth(formType...)...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Contains(t, r.body, `"status":"resolved"`)
	r = e.do(t, "POST", "api/sagas/o1/resolve", form("again"), withAuth(formType...)...)
	assert.Equal(t, http.StatusConflict, r.code)
	evs, err := e.c.History(context.Background(), "o1")
	require.NoError(t, err)
	last := evs[len(evs)-1]
	assert.Equal(t, coord.EventResolved, last.Kind)
	assert.Equal(t, "ops", last.Actor)
	assert.Equal(t, "refunded by hand", last.Reason)
}

func TestConsole_ShowsCountsListsAndATimelineAndItsButtonsAct(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	e.failed(t, "o1")
	_, err := e.h.Run(context.Background(), "o2", &order{ID: "o2"})
	require.NoError(t, err)

	index := e.do(t, "GET", "", nil, auth...)
	require.Equal(t, http.StatusOK, index.code, index.body)
	assert.Contains(t, index.hdr.Get("Content-Type"), "text/html")
	assert.Contains(t, index.body, `href="sagas/o1"`)
	assert.Contains(t, index.body, `<span class="n">1</span><span class="label">failed</span>`)
	assert.Contains(t, index.body, `<span class="n">1</span><span class="label">succeeded</span>`)
	assert.Contains(t, index.body, `href="style.css"`)
	css := e.do(t, "GET", "style.css", nil, auth...)
	assert.Equal(t, http.StatusOK, css.code)
	assert.Contains(t, css.hdr.Get("Content-Type"), "text/css")

	page := e.do(t, "GET", "sagas/o1", nil, auth...)
	require.Equal(t, http.StatusOK, page.code)
	for _, want := range []string{"compensation-failed", "try-failed", "payments service down", `action="o1/retry"`, `action="o1/resolve"`, `href="../style.css"`} {
		assert.Contains(t, page.body, want)
	}
	assert.Equal(t, http.StatusNotFound, e.do(t, "GET", "sagas/nope", nil, auth...).code)

	r := e.do(t, "POST", "sagas/o1/retry", form("fixed"), withAuth(formType...)...)
	require.Equal(t, http.StatusSeeOther, r.code, r.body)
	loc, err := url.Parse(r.hdr.Get("Location"))
	require.NoError(t, err)
	assert.Equal(t, "../o1", loc.Path, "relative, so that it stays under the mount point")
	assert.Equal(t, "retry: done", loc.Query().Get("msg"))
	page = e.do(t, "GET", "sagas/o1?"+loc.RawQuery, nil, auth...)
	assert.Contains(t, page.body, `id="status">compensated<`)
	assert.Contains(t, page.body, "retry: done")
	assert.NotContains(t, page.body, "<form", "no buttons for a compensated saga")
}

func TestConsole_ShowsASealedStateOnlySealed(t *testing.T) {
	sealer, err := coord.NewSealer(coord.Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	e := newEnv(t, coordhttp.Options{}, coord.Options{Codec: sealer})
	e.failed(t, "o1")
	for _, path := range []string{"sagas/o1", "api/sagas/o1", "api/sagas", ""} {
		r := e.do(t, "GET", path, nil, auth...)
		require.Equal(t, http.StatusOK, r.code, path)
		assert.NotContains(t, r.body, "card-4111", path)
	}
	r := e.do(t, "GET", "api/sagas/o1", nil, auth...)
	assert.Contains(t, r.body, `"sealed":"k1"`)
}

func TestConsole_ChallengeLetsABrowserAskForBasicCredentials(t *testing.T) {
	e := newEnv(t, coordhttp.Options{Challenge: `Basic realm="sagas"`, Authorize: func(r *http.Request) (string, bool) {
		user, pass, ok := r.BasicAuth()
		return user, ok && pass == token
	}}, coord.Options{})
	r := e.do(t, "GET", "", nil)
	assert.Equal(t, http.StatusUnauthorized, r.code)
	assert.Equal(t, `Basic realm="sagas"`, r.hdr.Get("WWW-Authenticate"))
	assert.Empty(t, r.body)
	req, err := http.NewRequest("GET", e.srv.URL+"/admin/", nil)
	require.NoError(t, err)
	req.SetBasicAuth("alice", token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "alice", "the operator's name is shown")
}
