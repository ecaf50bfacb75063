package coord

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// Options configures a Coordinator. The zero value is ready to use.
type Options struct {
	// Owner names this coordinator in the lease of the sagas it runs.
	// Default: host name and process id.
	Owner string

	// LeaseDuration is how long a saga stays reserved to the coordinator
	// running it after its last log write. Another coordinator recovers the
	// saga once the lease has expired, so a lease must be much longer than
	// a log write; a step that runs longer renews it every third of it.
	// It must also exceed the longest backoff between two tries (see
	// RetryPolicy.MaxBackoff), which does not renew it. Default: 30s.
	LeaseDuration time.Duration

	// RecoverEvery is the interval of the loop started by Start.
	// Default: 10s.
	RecoverEvery time.Duration

	// Hooks are called as steps start, succeed, fail and are compensated.
	// Default: none.
	Hooks Hooks

	// crashAt, when it returns true, makes the coordinator abandon the run at
	// that point as a process that died there would. Tests only.
	crashAt func(crashPoint) bool
}

func (o Options) withDefaults() Options {
	if o.Owner == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "coord"
		}
		o.Owner = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 30 * time.Second
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = 10 * time.Second
	}
	return o
}

// RetryPolicy says how often a step's action or compensation is tried and
// how long to wait in between. The zero value means the defaults.
type RetryPolicy struct {
	// Attempts is the number of tries, the first included. Default: 3.
	Attempts int

	// Backoff is the wait after the first failed try; it doubles after
	// each further one, with jitter (a random wait between half and all of
	// it). Default: 100ms.
	Backoff time.Duration

	// MaxBackoff caps the wait. Default: 10s.
	MaxBackoff time.Duration

	// Retryable reports whether a failed try may be tried again. Default:
	// every error is retryable.
	Retryable func(error) bool
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 3
	}
	if p.Backoff <= 0 {
		p.Backoff = 100 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 10 * time.Second
	}
	if p.MaxBackoff < p.Backoff {
		p.MaxBackoff = p.Backoff
	}
	return p
}

func (p RetryPolicy) retryable(err error) bool {
	if errors.Is(err, ErrInvalid) {
		return false
	}
	return p.Retryable == nil || p.Retryable(err)
}

// wait returns the jittered wait after the given failed attempt (1-based).
func (p RetryPolicy) wait(attempt int) time.Duration {
	d := p.Backoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// checkText returns an error wrapping ErrInvalid unless s is non-empty,
// valid UTF-8 and free of NUL bytes: PostgreSQL's text type stores no other.
func checkText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalid, what, s)
	}
	return nil
}
