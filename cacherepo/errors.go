package cacherepo

import (
	"errors"
	"fmt"
)

// notFoundError is the dynamic type of ErrNotFound. Its NotFound method lets
// code that does not import cacherepo recognise it through the
// interface{ NotFound() bool } behaviour, as pgrepo and docrepo errors are.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// NotFound reports that the error means "no such record".
func (e *notFoundError) NotFound() bool { return true }

var (
	// ErrMiss means that the cache holds no value for the key (absent,
	// expired, or only a loader's lease). Returned by Get.
	ErrMiss = errors.New("cacherepo: cache miss")

	// ErrNotFound means that the record does not exist in the source of
	// truth: a loader reported it (see Options.IsNotFound), or a tombstone
	// cached from such a report was hit. Its dynamic type has a method
	// NotFound() bool that returns true.
	ErrNotFound error = &notFoundError{"cacherepo: not found"}

	// ErrRedis wraps every error that Redis or the connection to it
	// returned (the go-redis error stays reachable with errors.As/errors.Is,
	// for example context.DeadlineExceeded after Options.Timeout).
	ErrRedis = errors.New("cacherepo: redis error")

	// ErrCodec means that a value could not be encoded or a cached entry
	// could not be decoded; the codec's error stays reachable.
	ErrCodec = errors.New("cacherepo: codec error")

	// ErrInvalid means that a call was given an argument it cannot use (an
	// empty key, a nil loader, a negative or sub-millisecond TTL, a nil
	// context) or that New was given a nil client or an out-of-range option
	// (those errors wrap ErrInvalidOptions too). It is returned before any
	// Redis I/O: nothing took effect.
	ErrInvalid = errors.New("cacherepo: invalid argument")

	// ErrInvalidOptions means that New was given a nil client or an
	// out-of-range option. It wraps ErrInvalid, so errors.Is(err,
	// ErrInvalid) holds for it too.
	ErrInvalidOptions error = &wrapErr{"cacherepo: invalid options", ErrInvalid}

	// ErrLoaderPanic is wrapped by the error that the callers who joined
	// another caller's load get when that load's loader panicked or called
	// runtime.Goexit (the caller that ran the loader gets the panic itself),
	// and by the Err of EventLoaderPanic. The error is a *PanicError, which
	// holds the panic value and the loader's stack.
	ErrLoaderPanic = errors.New("cacherepo: loader panicked")

	// ErrBreakerOpen means that the circuit breaker (Options.Breaker) is
	// open, or half-open with its probes in flight, and Redis was not
	// called: nothing took effect. It comes wrapped together with ErrRedis,
	// so code that handles Redis failures handles it too.
	ErrBreakerOpen = errors.New("cacherepo: circuit breaker open, redis not called")

	// ErrOverloaded means that a load GetOrLoad or GetManyOrLoad would have
	// run without Redis was refused because BreakerOptions.MaxConcurrentLoads
	// such loads were already in flight: the loader was not called and
	// nothing was cached. Retry later or degrade.
	ErrOverloaded = errors.New("cacherepo: too many loads without redis")
)

// wrapErr is a sentinel with a message of its own that wraps another.
type wrapErr struct {
	msg string
	err error
}

func (e *wrapErr) Error() string { return e.msg }
func (e *wrapErr) Unwrap() error { return e.err }

// PanicError describes a loader that panicked or called runtime.Goexit
// (t.FailNow does). It wraps ErrLoaderPanic and, when the panic value is an
// error, that error too.
type PanicError struct {
	// Key is the caller's key; empty for a GetManyOrLoad batch.
	Key string
	// Value is what the loader panicked with; nil after runtime.Goexit.
	Value any
	// Goexit is true when the loader called runtime.Goexit instead.
	Goexit bool
	// Stack is the stack of the goroutine that ran the loader, taken where
	// it panicked (runtime/debug.Stack).
	Stack []byte
}

// Error names the key and the panic value; the stack is in Stack.
func (e *PanicError) Error() string {
	if e.Goexit {
		return fmt.Sprintf("%s: %q: runtime.Goexit called in the loader", ErrLoaderPanic, e.Key)
	}
	return fmt.Sprintf("%s: %q: %v", ErrLoaderPanic, e.Key, e.Value)
}

// Unwrap returns ErrLoaderPanic and the panic value when it is an error.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrLoaderPanic, err}
	}
	return []error{ErrLoaderPanic}
}

// DefaultIsNotFound is the not-found predicate used when Options.IsNotFound
// is nil. It reports whether err is ErrNotFound or any error in its chain has
// a method NotFound() bool that returns true (pgrepo.ErrNotFound and
// docrepo.ErrNotFound do), so cacherepo needs to import neither.
func DefaultIsNotFound(err error) bool {
	if errors.Is(err, ErrNotFound) {
		return true
	}
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}

// invalid returns an error wrapping ErrInvalid for a bad argument.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func redisErr(op, key string, err error) error {
	return fmt.Errorf("%w: %s %q: %w", ErrRedis, op, key, err)
}

func codecErr(op, key string, err error) error {
	return fmt.Errorf("%w: %s %q: %w", ErrCodec, op, key, err)
}

// notFoundErr returns the error GetOrLoad reports for a not-found load: the
// loader's error, made to wrap ErrNotFound as well when it does not already.
func notFoundErr(key string, loadErr error) error {
	if errors.Is(loadErr, ErrNotFound) {
		return loadErr
	}
	return fmt.Errorf("%w: %q: %w", ErrNotFound, key, loadErr)
}

// tombstoneErr is the error for a cached tombstone: the loader's original
// error is gone, only the fact that the record did not exist is cached.
func tombstoneErr(key string) error {
	return fmt.Errorf("%w: %q (cached)", ErrNotFound, key)
}
