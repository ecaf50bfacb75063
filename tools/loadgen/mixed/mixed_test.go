package mixed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fakeServer answers the example server's routes the way a test asks: each
// kind of request gets the status answer gives it. It logs every request.
type fakeServer struct {
	answer func(op Op) int
	mu     sync.Mutex
	log    []string // "METHOD path token"
	n      int
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.log = append(f.log, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
	f.n++
	n := f.n
	f.mu.Unlock()
	var op Op
	switch {
	case r.Method == "POST" && r.URL.Path == "/users":
		op = OpRegister
	case r.Method == "POST" && r.URL.Path == "/sessions":
		op = OpLogin
	case r.Method == "GET":
		op = OpRead
	case r.Method == "PATCH":
		op = OpPatch
	case r.Method == "POST":
		op = OpConversation
	case r.Method == "DELETE":
		op = OpDelete
	}
	status := f.answer(op)
	w.Header().Set("Content-Type", "application/json")
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
	if op != OpRegister {
		id = strings.Split(strings.TrimPrefix(r.URL.Path, "/users/"), "/")[0]
	}
	if status == http.StatusAccepted {
		w.Header().Set("Location", "/operations/x/"+id)
	}
	w.WriteHeader(status)
	switch {
	case op == OpRegister && status == http.StatusCreated:
		_ = json.NewEncoder(w).Encode(map[string]any{"user": map[string]string{"id": id}, "welcome_conversation_id": fmt.Sprintf("%024d", n)})
	case op == OpLogin && status == http.StatusCreated:
		_ = json.NewEncoder(w).Encode(map[string]string{"token": fmt.Sprintf("t%d", n)})
	case op == OpConversation && status == http.StatusCreated:
		_ = json.NewEncoder(w).Encode(map[string]string{"id": fmt.Sprintf("%024d", n)})
	case status == http.StatusAccepted:
		_ = json.NewEncoder(w).Encode(map[string]string{"id": "x/" + id, "kind": "update-user", "user_id": id})
	default:
		_, _ = w.Write([]byte(`{}`))
	}
}

func runAgainst(t *testing.T, answer func(Op) int, requests int) (*Record, []string) {
	t.Helper()
	f := &fakeServer{answer: answer}
	srv := httptest.NewServer(f)
	defer srv.Close()
	base, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Record{}
	if err := Run(context.Background(), Config{Base: base, Client: srv.Client(), Workers: 2, MaxRequests: requests, Prefix: "t"}, rec); err != nil {
		t.Fatal(err)
	}
	return rec, f.log
}

// requestsAbout returns the logged requests whose path names the user.
func requestsAbout(log []string, id string) []string {
	var out []string
	for _, l := range log {
		if strings.Contains(l, "/users/"+id) {
			out = append(out, l)
		}
	}
	return out
}

func TestRun_StopsAfterMaxRequests(t *testing.T) {
	rec, _ := runAgainst(t, func(op Op) int {
		if op == OpRegister || op == OpLogin || op == OpConversation {
			return http.StatusCreated
		}
		return http.StatusOK
	}, 50)
	// A registration's login is part of its step: at most one extra each.
	if n := len(rec.Results); n < 50 || n > 100 {
		t.Errorf("%d requests for MaxRequests 50", n)
	}
}

func TestRun_AnUnacknowledgedPatchIsRecordedAndTheUserIsPatchedNoMore(t *testing.T) {
	for _, status := range []int{http.StatusAccepted, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			rec, log := runAgainst(t, func(op Op) int {
				switch op {
				case OpRegister, OpLogin, OpConversation:
					return http.StatusCreated
				case OpPatch:
					return status
				case OpDelete:
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			}, 300)
			patched := 0
			for _, u := range rec.Users {
				var patches int
				for _, l := range requestsAbout(log, u.ID) {
					if strings.HasPrefix(l, "PATCH ") {
						patches++
					}
				}
				if patches > 1 {
					t.Errorf("user %s: %d PATCHes after an unacknowledged one", u.ID, patches)
				}
				if patches == 1 {
					patched++
					if u.UnackedEmail == "" || u.Email != u.Username+"@example.org" {
						t.Errorf("user %s: Email %q, UnackedEmail %q: want the registration's and the PATCH's", u.ID, u.Email, u.UnackedEmail)
					}
				}
			}
			if patched == 0 {
				t.Fatal("no user was patched")
			}
			if status == http.StatusAccepted && len(rec.Operations) < patched {
				t.Errorf("%d operations recorded for %d PATCHes answered 202", len(rec.Operations), patched)
			}
		})
	}
}

func TestRun_AnAcknowledgedDeleteEndsTheUsersRequests(t *testing.T) {
	rec, log := runAgainst(t, func(op Op) int {
		switch op {
		case OpRegister, OpLogin, OpConversation:
			return http.StatusCreated
		case OpDelete:
			return http.StatusNoContent
		}
		return http.StatusOK
	}, 400)
	deleted := 0
	for _, u := range rec.Users {
		if !u.Deleted {
			continue
		}
		deleted++
		about := requestsAbout(log, u.ID)
		if last := about[len(about)-1]; !strings.HasPrefix(last, "DELETE ") {
			t.Errorf("user %s: %q after its DELETE was answered 204", u.ID, last)
		}
	}
	if deleted == 0 {
		t.Fatal("no user was deleted")
	}
}

func TestRun_A401DropsTheTokenAndTheUserLogsInAgain(t *testing.T) {
	var mu sync.Mutex
	first := true
	rec, log := runAgainst(t, func(op Op) int {
		mu.Lock()
		defer mu.Unlock()
		switch op {
		case OpRegister, OpLogin:
			return http.StatusCreated
		case OpPatch, OpConversation, OpDelete:
			if first {
				first = false
				return http.StatusUnauthorized
			}
			return http.StatusCreated
		}
		return http.StatusOK
	}, 200)
	var sawLost bool
	for _, r := range rec.Results {
		sawLost = sawLost || r.SessionLost
	}
	if !sawLost {
		t.Fatal("no 401 recorded as a lost session")
	}
	logins := 0
	for _, l := range log {
		if strings.HasPrefix(l, "POST /sessions") {
			logins++
		}
	}
	if logins <= len(rec.Users) {
		t.Errorf("%d logins for %d users: the user whose session was lost did not log in again", logins, len(rec.Users))
	}
}
