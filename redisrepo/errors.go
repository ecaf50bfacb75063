package redisrepo

import (
	"errors"
	"fmt"
)

// notFoundError is the dynamic type of ErrNotFound. Its NotFound method lets
// code that does not import redisrepo recognise it through the
// interface{ NotFound() bool } behaviour, as the other polystore packages'
// not-found errors are recognised.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// NotFound reports that the error means "no such record".
func (e *notFoundError) NotFound() bool { return true }

var (
	// ErrInvalid means that an argument or an option was out of range (an
	// empty name, a non-positive TTL or page size, a NaN score, a cursor or
	// session token that is not one this package issued). Nothing was sent
	// to Redis and nothing changed.
	ErrInvalid = errors.New("redisrepo: invalid argument")

	// ErrNotFound means that there is no such session or leaderboard member
	// (absent, expired or revoked). Its dynamic type has a method
	// NotFound() bool that returns true.
	ErrNotFound error = &notFoundError{"redisrepo: not found"}

	// ErrRedis wraps every error that Redis or the connection to it returned;
	// the go-redis error stays reachable with errors.As and errors.Is (a
	// context.DeadlineExceeded, a *net.OpError, a redis.Error). The message
	// says whether the operation may have taken effect.
	ErrRedis = errors.New("redisrepo: redis error")

	// ErrCodec means that a value could not be encoded, or that what Redis
	// holds could not be decoded into the Go type (session data, a member of
	// a Leaderboard[M] that is not an M, a counter that is not an integer);
	// the underlying error stays reachable.
	ErrCodec = errors.New("redisrepo: codec error")

	// ErrLocked means that another holder has the lock (TryLock), or that
	// Lock's context ended before the lock was free.
	ErrLocked = errors.New("redisrepo: locked by another holder")

	// ErrNotHeld means that a Renew or Release came from a Lock that no
	// longer holds its lock: it expired, was released, or another holder
	// took it since. Nothing changed.
	ErrNotHeld = errors.New("redisrepo: lock not held")
)

// What an error message says about the effect of the failed call.
const (
	nothingChanged = "nothing changed"
	mayHaveChanged = "it may or may not have taken effect"
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+"; nothing was sent to Redis", append([]any{ErrInvalid}, args...)...)
}

// redisErr wraps a go-redis error; effect is nothingChanged for reads and
// mayHaveChanged for writes, whose reply was lost.
func redisErr(op, effect string, err error) error {
	return fmt.Errorf("%w: %s (%s): %w", ErrRedis, op, effect, err)
}

func codecErr(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrCodec, op, err)
}
