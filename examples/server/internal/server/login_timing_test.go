package server_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/server"
)

// timingEnv is a server whose logins are not limited, hashing at cost.
func timingEnv(tb testing.TB, cost int) *env {
	e := newEnv(tb, func(o *server.Options, _ *server.Stores) {
		o.BcryptCost = cost
		o.LoginFailuresPerAccount = -1
	})
	e.registerOnly("ada")
	return e
}

// The two logins the timing compares: a wrong password for an account that
// exists, and an account that does not.
const (
	knownAccount   = `{"username":"ada","password":"wrong horse"}`
	unknownAccount = `{"username":"nobody","password":"wrong horse"}`
)

// TestServer_LoginTiming_KnownAndUnknownAccountsTakeAlike measures, without
// asserting on time, a failed login for an account that exists and for one
// that does not, interleaved, at bcrypt cost 8, and logs both medians and
// their ratio: the unknown account is compared against a dummy hash of the
// same cost, so the two should be close. It asserts only the answers.
func TestServer_LoginTiming_KnownAndUnknownAccountsTakeAlike(t *testing.T) {
	t.Parallel()
	e := timingEnv(t, 8)
	const n = 15
	var known, unknown []time.Duration
	for range n {
		for _, body := range []string{knownAccount, unknownAccount} {
			start := time.Now()
			res := e.do("POST", "/sessions", body)
			d := time.Since(start)
			require.Equal(t, http.StatusUnauthorized, res.Status)
			if body == knownAccount {
				known = append(known, d)
			} else {
				unknown = append(unknown, d)
			}
		}
	}
	mk, mu := median(known), median(unknown)
	t.Logf("bcrypt cost 8, %d each: median known account (wrong password) %v, unknown account %v, ratio known/unknown %.3f",
		n, mk, mu, float64(mk)/float64(mu))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkLogin: a failed login at the default bcrypt cost (10), for an
// account that exists (wrong password) and one that does not. Compare the
// two ns/op: go test -run '^$' -bench Login ./examples/server/internal/server/
func BenchmarkLogin(b *testing.B) {
	e := timingEnv(b, 10)
	for _, bm := range []struct{ name, body string }{
		{"account=known", knownAccount},
		{"account=unknown", unknownAccount},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				if res := e.do("POST", "/sessions", bm.body); res.Status != http.StatusUnauthorized {
					b.Fatalf("status %d", res.Status)
				}
			}
		})
	}
}
