// Package mixed is the mixed load of tools/loadgen (-scenario mixed) and of
// the fault-injection harness tools/chaos: workers that register users, log
// them in, read their profiles, PATCH them, create conversations and delete
// them on the example server (examples/server), and record what each answer
// promised, so that a checker can compare the stores with it afterwards.
//
// Each user belongs to one worker, which sends its requests one at a time:
// the server's promises are about one client's sequence of requests (an
// acknowledged PATCH is what the next read returns), and the server
// documents that a conversation created while its user is being deleted can
// outlive the user, which a client that waits for its answers never does. A
// user on which a request got no answer (the server may still be working on
// it) or whose PATCH or DELETE was not acknowledged is left alone from then
// on, so that the record says exactly what the server promised.
package mixed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Op names a kind of request.
type Op string

// The requests the load sends.
const (
	OpRegister     Op = "register"     // POST /users
	OpLogin        Op = "login"        // POST /sessions
	OpRead         Op = "read"         // GET /users/{id}
	OpPatch        Op = "patch"        // PATCH /users/{id} (If-Match: *)
	OpConversation Op = "conversation" // POST /users/{id}/conversations
	OpDelete       Op = "delete"       // DELETE /users/{id}
)

// Ops lists every Op, in the order reports show them.
var Ops = []Op{OpRegister, OpLogin, OpRead, OpPatch, OpConversation, OpDelete}

// Password is every user's password.
const Password = "correct horse battery"

// Config sets up a run. Base and Prefix are required.
type Config struct {
	// Base is the server's URL (the caller checks it is on loopback).
	Base *url.URL
	// Client sends the requests. Default: a client with a 10s timeout.
	Client *http.Client
	// Workers is the number of requests in flight at once. Default: 4.
	Workers int
	// MaxRequests bounds the run's steps, each one request except a
	// registration answered 201, which logs the new user in as well: so
	// at most twice as many requests are sent. Default: 100,000.
	MaxRequests int
	// Prefix starts every username: it makes them unique to the run
	// (lower-case letters and digits, starting with a letter).
	Prefix string
	// MaxUsers is the most users a worker keeps alive at once; past it the
	// worker deletes rather than registers. Default: 20.
	MaxUsers int
	// Seed makes the choice of requests repeatable. Default: 1.
	Seed uint64
}

// Result is one request's outcome.
type Result struct {
	Op      Op
	Status  int // 0: no answer (a transport error or the client's timeout)
	Start   time.Time
	Latency time.Duration
	// NeedsSession tells the requests that need a session (login included),
	// which the server documents as failing with 503 while Redis is down.
	NeedsSession bool
	// SessionLost is a 401 to a token that a 201 gave: the session is gone
	// from Redis (a restart without persistence loses them all).
	SessionLost bool
	// Error is the error of an answer of 500 or above (the start of its
	// body), or the transport's error when there was no answer.
	Error string
}

// User is a user registered with 201, and what the server acknowledged
// about it since.
type User struct {
	ID                  string
	Username            string
	WelcomeConversation string
	// Email is the last email acknowledged: the registration's, or the
	// last PATCH answered 200.
	Email string
	// UnackedEmail is the email of a PATCH sent after that and not
	// acknowledged (202, 503 or no answer): it may be in effect, or become
	// so once recovery runs. The worker PATCHes the user no more after one.
	UnackedEmail string
	// Conversations are the conversations created with 201.
	Conversations []string
	// Deleted: a DELETE answered 204.
	Deleted bool
	// DeleteUnacked: a DELETE answered otherwise (202 is in Operations):
	// the user may or may not be gone.
	DeleteUnacked bool
	// Unanswered: a request got no answer; the server may still run it.
	Unanswered bool

	token       string
	patchClosed bool
	seq         int
}

// Operation is an operation a 202 named: recovery finishes it.
type Operation struct {
	Kind   string // register-user, update-user, delete-user
	UserID string
	Path   string // its URL path (/operations/...)
}

// Record is what a run sent and what the server promised.
type Record struct {
	mu         sync.Mutex
	Results    []Result
	Users      []*User
	Operations []Operation
}

// Snapshot returns a copy of the results so far.
func (r *Record) Snapshot() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.Results...)
}

func (r *Record) add(res Result) {
	r.mu.Lock()
	r.Results = append(r.Results, res)
	r.mu.Unlock()
}

func (r *Record) addUser(u *User) {
	r.mu.Lock()
	r.Users = append(r.Users, u)
	r.mu.Unlock()
}

func (r *Record) addOperation(op Operation) {
	r.mu.Lock()
	r.Operations = append(r.Operations, op)
	r.mu.Unlock()
}

// Run sends the mixed load until ctx ends or MaxRequests were sent, and
// records into rec. It returns once every worker has had its last answer.
// Users stay in rec across runs, but each run's workers start with none.
func Run(ctx context.Context, cfg Config, rec *Record) error {
	if cfg.Base == nil || cfg.Prefix == "" {
		return fmt.Errorf("mixed: Base and Prefix are required")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = 100_000
	}
	if cfg.MaxUsers <= 0 {
		cfg.MaxUsers = 20
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wk := &worker{cfg: cfg, rec: rec, id: w, sent: &sent,
			rnd: rand.New(rand.NewPCG(cfg.Seed, uint64(w)))}
		wg.Go(func() { wk.run(ctx) })
	}
	wg.Wait()
	return nil
}

type worker struct {
	cfg   Config
	rec   *Record
	id    int
	rnd   *rand.Rand
	sent  *atomic.Int64
	users []*User // alive and usable
	n     int
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil && w.sent.Add(1) <= int64(w.cfg.MaxRequests) {
		w.step(ctx)
	}
}

// step sends one request (two for a registration: it logs the user in).
func (w *worker) step(ctx context.Context) {
	roll := w.rnd.Float64()
	if len(w.users) < 2 || (roll < 0.12 && len(w.users) < w.cfg.MaxUsers) {
		w.register(ctx)
		return
	}
	u := w.users[w.rnd.IntN(len(w.users))]
	if u.token == "" && roll >= 0.45 { // every other request needs a session
		w.login(ctx, u)
		return
	}
	switch {
	case roll < 0.45:
		w.read(ctx, u)
	case roll < 0.65 && !u.patchClosed:
		w.patch(ctx, u)
	case roll < 0.85 || len(w.users) < w.cfg.MaxUsers/2:
		w.conversation(ctx, u)
	default:
		w.delete(ctx, u)
	}
}

// forget drops u from the users the worker sends requests about.
func (w *worker) forget(u *User) {
	for i, v := range w.users {
		if v == u {
			w.users = append(w.users[:i], w.users[i+1:]...)
			return
		}
	}
}

// answer is a decoded response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request, records its result and returns the answer (status
// 0 when there was none).
func (w *worker) do(ctx context.Context, op Op, method, path, token string, body any, header map[string]string) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err) // only maps of strings are sent
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, w.cfg.Base.JoinPath(path).String(), rd)
	if err != nil {
		panic(err) // the paths are built here from ids the server gave
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	var a answer
	res, err := w.cfg.Client.Do(req)
	if err == nil {
		a.body, err = io.ReadAll(io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
		if err == nil {
			a.status, a.header = res.StatusCode, res.Header
		}
	}
	r := Result{Op: op, Status: a.status, Start: start, Latency: time.Since(start),
		NeedsSession: token != "" || op == OpLogin, SessionLost: a.status == http.StatusUnauthorized && token != ""}
	switch {
	case err != nil:
		r.Error = err.Error()
	case a.status >= 500:
		r.Error = string(a.body[:min(len(a.body), 300)])
	}
	w.rec.add(r)
	return a
}

func (w *worker) register(ctx context.Context) {
	w.n++
	name := fmt.Sprintf("%s_%d_%d", w.cfg.Prefix, w.id, w.n)
	email := name + "@example.org"
	a := w.do(ctx, OpRegister, "POST", "users", "", map[string]string{
		"username": name, "email": email, "password": Password, "language": "fr"}, nil)
	switch a.status {
	case http.StatusCreated:
		var body struct {
			User struct {
				ID string `json:"id"`
			} `json:"user"`
			WelcomeConversationID string `json:"welcome_conversation_id"`
		}
		if json.Unmarshal(a.body, &body) != nil || body.User.ID == "" {
			return // the checker finds the user in the stores anyway
		}
		u := &User{ID: body.User.ID, Username: name, Email: email, WelcomeConversation: body.WelcomeConversationID}
		w.rec.addUser(u)
		w.users = append(w.users, u)
		w.login(ctx, u)
	case http.StatusAccepted:
		w.operation(a)
	}
}

// operation records the operation a 202 named.
func (w *worker) operation(a answer) {
	var body struct {
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(a.body, &body) != nil {
		return
	}
	path := a.header.Get("Location")
	if path == "" {
		path = "/operations/" + body.ID
	}
	w.rec.addOperation(Operation{Kind: body.Kind, UserID: body.UserID, Path: path})
}

func (w *worker) login(ctx context.Context, u *User) {
	a := w.do(ctx, OpLogin, "POST", "sessions", "", map[string]string{"username": u.Username, "password": Password}, nil)
	if a.status != http.StatusCreated {
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(a.body, &body) == nil {
		u.token = body.Token
	}
}

// authed handles what every request with a session shares: a 401 means
// the session is gone (log in again); no answer leaves the user alone.
func (w *worker) authed(u *User, a answer) {
	switch a.status {
	case 0:
		u.Unanswered = true
		w.forget(u)
	case http.StatusUnauthorized:
		u.token = ""
	}
}

func (w *worker) read(ctx context.Context, u *User) {
	if a := w.do(ctx, OpRead, "GET", "users/"+u.ID, "", nil, nil); a.status == 0 {
		u.Unanswered = true
		w.forget(u)
	}
}

func (w *worker) patch(ctx context.Context, u *User) {
	u.seq++
	email := fmt.Sprintf("%s.v%d@example.org", u.Username, u.seq)
	a := w.do(ctx, OpPatch, "PATCH", "users/"+u.ID, u.token, map[string]string{"email": email},
		map[string]string{"If-Match": "*"})
	w.authed(u, a)
	switch a.status {
	case http.StatusOK:
		u.Email = email
	case http.StatusUnauthorized, http.StatusTooManyRequests:
		// refused before anything was read or written
	default: // 202, 503, no answer: it may take effect, now or later
		u.UnackedEmail = email
		u.patchClosed = true
		if a.status == http.StatusAccepted {
			w.operation(a)
		}
	}
}

func (w *worker) conversation(ctx context.Context, u *User) {
	a := w.do(ctx, OpConversation, "POST", "users/"+u.ID+"/conversations", u.token,
		map[string]string{"title": "practice " + strings.Repeat("x", w.rnd.IntN(20))}, nil)
	w.authed(u, a)
	if a.status == http.StatusCreated {
		var body struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(a.body, &body) == nil && body.ID != "" {
			u.Conversations = append(u.Conversations, body.ID)
		}
	}
}

func (w *worker) delete(ctx context.Context, u *User) {
	a := w.do(ctx, OpDelete, "DELETE", "users/"+u.ID, u.token, nil, nil)
	w.authed(u, a)
	switch a.status {
	case http.StatusNoContent:
		u.Deleted = true
		w.forget(u)
	case http.StatusUnauthorized, http.StatusTooManyRequests:
	case 0:
		u.DeleteUnacked = true
	default:
		u.DeleteUnacked = true
		w.forget(u)
		if a.status == http.StatusAccepted {
			w.operation(a)
		}
	}
}
