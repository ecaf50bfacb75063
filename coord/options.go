package coord

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Options configures a Coordinator. The zero value is ready to use: a zero
// field means its default. New rejects, with an error wrapping ErrInvalid,
// a negative duration or any other value it cannot honour, rather than
// replacing it by the default.
type Options struct {
	// Owner names this coordinator in the lease of the sagas it runs. It
	// must be valid UTF-8 without NUL bytes. Default: host name and process
	// id.
	Owner string

	// LeaseDuration is how long a saga stays reserved to the coordinator
	// running it after its last log write. Another coordinator recovers the
	// saga once the lease has expired, so a lease must be much longer than
	// a log write; a step that runs longer renews it every third of it.
	// It must also exceed the longest backoff between two tries (see
	// RetryPolicy.MaxBackoff), which does not renew it (not checked: see
	// README.md). The log keeps it in milliseconds, so a positive value must
	// be at least 1ms; negative is invalid. Default: 30s.
	LeaseDuration time.Duration

	// SettleTimeout bounds what a run waits for, in all, once a log write's
	// outcome is unknown or the run gives up (the caller's ctx ended, the
	// connection broke): learning on fresh connections whether a cut insert
	// of the saga's record, or a cut COMMIT that carried it, took effect,
	// and giving the saga back to recovery. These waits ignore the caller's
	// ctx, since the answer is owed even to a caller who gave up, so this
	// is what a run may take past its ctx's deadline. When the budget runs
	// out before the log answers, Run returns what it returns for an outcome
	// it could not learn (an error wrapping ErrOutcomeUnknown, or
	// ErrIncomplete when the saga is known to be logged), and a saga that
	// was not given back is taken by recovery when its lease expires.
	// Nothing else depends on it: a shorter budget makes Run say "unknown"
	// sooner, never anything untrue. Negative is invalid. Default (0): 2s.
	SettleTimeout time.Duration

	// RecoverEvery is the interval of the loop started by Start. Negative
	// is invalid. Default: 10s.
	RecoverEvery time.Duration

	// RecoveryWorkers is how many sagas Recover (and the loop of Start)
	// drives at once in this coordinator; it claims them in batches of at
	// most that many. Each needs a connection of the pool while it writes
	// its log, so more workers than the pool's connections only queue.
	// Negative is invalid. Default (0): 4.
	RecoveryWorkers int

	// Hooks are called as steps start, succeed, fail and are compensated.
	// Default: none.
	Hooks Hooks

	// DeadLetterAfter is how many times in a row recovery may take a saga
	// over without the saga's log moving (a step that crashes its process
	// every time, a coordinator killed each time it runs it): the takeover
	// after that turns the saga dead instead (StatusDead), which recovery
	// leaves alone and an operator retries or resolves. Any log write (a
	// step done, a failed try recorded, a run giving the saga back) starts
	// the count again. Negative is invalid. Default (0): 10.
	DeadLetterAfter int

	// Codec encodes the state before it is logged and decodes it after
	// (see StateCodec; NewSealer seals it). Default: none, the state's JSON
	// is stored as it is.
	Codec StateCodec

	// Retention removes finished sagas in the loop of Start (and
	// configures Purge). Default: nothing is removed.
	Retention Retention

	// TracerProvider starts the spans of runs, steps, recoveries and
	// operator actions (see README.md, Observability). Default (nil): the
	// global provider, otel.GetTracerProvider(), as it is when New runs;
	// until the application installs one, no span is started.
	// trace/noop's provider turns coord's spans off.
	TracerProvider trace.TracerProvider

	// MeterProvider makes coord's metrics (see README.md, Observability).
	// Default (nil): the global provider, otel.GetMeterProvider(), which
	// records nothing until the application installs one.
	MeterProvider metric.MeterProvider

	// crashAt, when it returns true, makes the coordinator abandon the run at
	// that point as a process that died there would. Tests only.
	crashAt func(crashPoint) bool

	// dropFinal, when it returns true for a saga's id, makes the finisher
	// drop that saga's final record instead of writing it, as a process
	// that died after Run returned would (see finisher).
	dropFinal func(id string) bool

	// allDurable makes every log record durable (no synchronous_commit
	// off), to measure what the non-durable ones save. Benchmarks only.
	allDurable bool
}

// DefaultSettleTimeout is Options.SettleTimeout's default: time for a few
// tries on fresh connections to a log that answers in milliseconds, short
// enough that a run cut by its caller's deadline returns soon after it.
const DefaultSettleTimeout = 2 * time.Second

// validate reports the first field New cannot honour, wrapping ErrInvalid.
func (o Options) validate() error {
	switch {
	case o.Owner != "" && checkText("Options.Owner", o.Owner) != nil:
		return checkText("Options.Owner", o.Owner)
	case o.LeaseDuration < 0:
		return fmt.Errorf("%w: negative Options.LeaseDuration %v", ErrInvalid, o.LeaseDuration)
	case o.LeaseDuration > 0 && o.LeaseDuration < time.Millisecond:
		return fmt.Errorf("%w: Options.LeaseDuration %v is under 1ms, the log's unit", ErrInvalid, o.LeaseDuration)
	case o.SettleTimeout < 0:
		return fmt.Errorf("%w: negative Options.SettleTimeout %v", ErrInvalid, o.SettleTimeout)
	case o.RecoverEvery < 0:
		return fmt.Errorf("%w: negative Options.RecoverEvery %v", ErrInvalid, o.RecoverEvery)
	case o.RecoveryWorkers < 0:
		return fmt.Errorf("%w: negative Options.RecoveryWorkers %d", ErrInvalid, o.RecoveryWorkers)
	case o.DeadLetterAfter < 0:
		return fmt.Errorf("%w: negative Options.DeadLetterAfter %d", ErrInvalid, o.DeadLetterAfter)
	case o.Retention.validate() != nil:
		return o.Retention.validate()
	}
	return nil
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
	if o.SettleTimeout <= 0 {
		o.SettleTimeout = DefaultSettleTimeout
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = 10 * time.Second
	}
	if o.RecoveryWorkers <= 0 {
		o.RecoveryWorkers = 4
	}
	if o.DeadLetterAfter <= 0 {
		o.DeadLetterAfter = 10
	}
	return o
}

// RetryPolicy says how often a step's action or compensation is tried and
// how long to wait in between. The zero value means the defaults, and so
// does a zero field; Register rejects a policy with a negative field, or a
// MaxBackoff under Backoff, with an error wrapping ErrInvalid.
type RetryPolicy struct {
	// Attempts is the number of tries, the first included. Negative is
	// invalid. Default (0): 3.
	Attempts int

	// Backoff is the wait after the first failed try; it doubles after
	// each further one, with jitter (a random wait between half and all of
	// it). Negative is invalid. Default (0): 100ms.
	Backoff time.Duration

	// MaxBackoff caps the wait. Negative, or positive and under Backoff, is
	// invalid. Default (0): 10s, or Backoff if that is longer.
	MaxBackoff time.Duration

	// Retryable reports whether a failed try may be tried again. Default:
	// every error is retryable.
	Retryable func(error) bool
}

// validate reports the first field that is invalid, wrapping ErrInvalid.
func (p RetryPolicy) validate() error {
	switch {
	case p.Attempts < 0:
		return fmt.Errorf("%w: negative RetryPolicy.Attempts %d", ErrInvalid, p.Attempts)
	case p.Backoff < 0:
		return fmt.Errorf("%w: negative RetryPolicy.Backoff %v", ErrInvalid, p.Backoff)
	case p.MaxBackoff < 0:
		return fmt.Errorf("%w: negative RetryPolicy.MaxBackoff %v", ErrInvalid, p.MaxBackoff)
	case p.MaxBackoff > 0 && p.MaxBackoff < p.Backoff:
		return fmt.Errorf("%w: RetryPolicy.MaxBackoff %v is under Backoff %v", ErrInvalid, p.MaxBackoff, p.Backoff)
	}
	return nil
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
