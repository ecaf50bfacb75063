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

	// ErrInvalidOptions means that New was given a nil client or an
	// out-of-range option.
	ErrInvalidOptions = errors.New("cacherepo: invalid options")
)

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
