package redisrepo

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// LockOptions configures a Locker. The zero value is ready to use: every
// zero field means the default named in its comment.
type LockOptions struct {
	// Prefix starts the keys of every lock: Prefix+"{"+name+"}" holds the
	// holder's token, Prefix+"{"+name+"}:fence" the lock's fencing counter.
	// The braces are a Cluster hash tag that puts both in one slot, so one
	// script can take the lock and draw its fencing token. Default: "lock:".
	Prefix string

	// RetryMin is Lock's first pause between attempts; each pause doubles,
	// with jitter, up to RetryMax, and is never longer than the holder's
	// remaining TTL. Default: 10ms.
	RetryMin time.Duration

	// RetryMax is Lock's longest pause between attempts. Default: 500ms.
	RetryMax time.Duration
}

const (
	defaultLockPrefix = "lock:"
	defaultRetryMin   = 10 * time.Millisecond
	defaultRetryMax   = 500 * time.Millisecond
	lockTokenBytes    = 16
)

// Locker hands out leases on named locks in one Redis (or one Cluster
// shard): mutual exclusion while nothing fails, and fencing tokens for when
// something does. Read the package documentation's "Locks" section before
// using it for correctness rather than efficiency. A Locker is safe for
// concurrent use and holds no goroutines.
type Locker struct {
	client             redis.UniversalClient
	prefix             string
	retryMin, retryMax time.Duration
}

// Lock is one acquisition of a named lock. Token is the random secret that
// proves the holding to Renew and Release; Fence is the lock's fencing
// token: it is larger than the Fence of every earlier acquisition of the
// same name, so a store that remembers the largest Fence it has seen can
// refuse the writes of a holder whose lock expired meanwhile.
type Lock struct {
	Name  string
	Token string
	Fence int64

	locker *Locker
}

// NewLocker returns a Locker over client (a *redis.Client,
// *redis.ClusterClient or *redis.Ring). It returns an error wrapping
// ErrInvalid for a nil client or an out-of-range option.
func NewLocker(client redis.UniversalClient, opts LockOptions) (*Locker, error) {
	if client == nil {
		return nil, invalid("nil client")
	}
	if opts.RetryMin < 0 || opts.RetryMax < 0 {
		return nil, invalid("negative RetryMin %s or RetryMax %s", opts.RetryMin, opts.RetryMax)
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultLockPrefix
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = defaultRetryMin
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = defaultRetryMax
	}
	if opts.RetryMax < opts.RetryMin {
		return nil, invalid("RetryMax %s is under RetryMin %s", opts.RetryMax, opts.RetryMin)
	}
	return &Locker{client: client, prefix: opts.Prefix, retryMin: opts.RetryMin, retryMax: opts.RetryMax}, nil
}

func (l *Locker) keys(name string) []string {
	k := l.prefix + "{" + name + "}"
	return []string{k, k + ":fence"}
}

// lockAcquire takes the lock if it is free and draws the next fencing token
// in the same script, so that fencing tokens follow the order of
// acquisitions. KEYS: lock, fence. ARGV: token, ttl ms. Returns {1, fence}
// or {0, the holder's remaining ms}.
var lockAcquire = redis.NewScript(`if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
`)

// lockRenew and lockRelease act only if the lock still holds the caller's
// token. KEYS: lock. ARGV: token (, ttl ms).
var (
	lockRenew = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
	lockRelease = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

func checkLock(name string, ttl time.Duration) error {
	if name == "" {
		return invalid("empty lock name")
	}
	if ttl < time.Millisecond {
		return invalid("lock TTL %s is under Redis's 1ms resolution", ttl)
	}
	return nil
}

// TryLock takes the lock called name for ttl if it is free, in one round
// trip, and returns it with its fencing token. It returns an error wrapping
// ErrLocked when another holder has it (nothing changed), ErrInvalid for an
// empty name or a ttl under 1ms, ErrRedis if Redis fails (the lock may have
// been taken; it then expires after ttl, since its token is lost).
func (l *Locker) TryLock(ctx context.Context, name string, ttl time.Duration) (*Lock, error) {
	if err := checkLock(name, ttl); err != nil {
		return nil, err
	}
	lk, _, err := l.try(ctx, name, ttl)
	return lk, err
}

// try makes one attempt; wait is the holder's remaining TTL when locked.
func (l *Locker) try(ctx context.Context, name string, ttl time.Duration) (*Lock, time.Duration, error) {
	var b [lockTokenBytes]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	token := base64.RawURLEncoding.EncodeToString(b[:])
	v, err := lockAcquire.Run(ctx, l.client, l.keys(name), token, ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return nil, 0, redisErr(fmt.Sprintf("taking lock %q", name), mayHaveChanged, err)
	}
	if len(v) != 2 {
		return nil, 0, codecErr(fmt.Sprintf("taking lock %q", name), fmt.Errorf("unexpected reply %v", v))
	}
	if v[0] == 0 {
		return nil, time.Duration(v[1]) * time.Millisecond, fmt.Errorf("%w: lock %q; nothing changed", ErrLocked, name)
	}
	return &Lock{Name: name, Token: token, Fence: v[1], locker: l}, 0, nil
}

// Lock takes the lock called name for ttl, waiting while another holder
// has it: it retries with exponential backoff and jitter (RetryMin to
// RetryMax, never past the holder's remaining TTL) until it gets the lock
// or ctx ends. Without a deadline on ctx it waits as long as it takes. It
// returns an error wrapping both ErrLocked and ctx's error when ctx ends
// first: between attempts nothing changed; during one (the error then also
// wraps ErrRedis) that attempt may have taken the lock, which then expires
// after ttl. It returns ErrInvalid for an empty name or a ttl under 1ms,
// ErrRedis if Redis fails (the lock may have been taken; it then expires
// after ttl).
func (l *Locker) Lock(ctx context.Context, name string, ttl time.Duration) (*Lock, error) {
	if err := checkLock(name, ttl); err != nil {
		return nil, err
	}
	pause := l.retryMin
	var timer *time.Timer
	for {
		lk, left, err := l.try(ctx, name, ttl)
		if err != nil && !errors.Is(err, ErrLocked) && ctx.Err() != nil {
			// The context ended during an attempt: to the caller that is
			// a wait that ran out, but the attempt may have taken the lock.
			return nil, fmt.Errorf("%w: lock %q, the context ended during an attempt, which may have taken the lock (it then expires after its TTL): %w",
				ErrLocked, name, err)
		}
		if !errors.Is(err, ErrLocked) {
			return lk, err
		}
		// Equal jitter: half the pause fixed, half random, so that
		// contenders spread out without any waiting for nothing.
		d := pause/2 + rand.N(pause/2+1)
		if left > 0 && d > left {
			d = left
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: lock %q, waited until the context ended; nothing changed: %w", ErrLocked, name, ctx.Err())
		case <-timer.C:
		}
		pause = min(2*pause, l.retryMax)
	}
}

// Renew sets the lock's remaining TTL to ttl, if k still holds it. Renew
// well before the TTL runs out (at a third of it, say): a renewal that
// arrives after expiry finds the lock gone or taken. It returns an error
// wrapping ErrNotHeld when the lock expired, was released or was taken by
// another holder (nothing changed), ErrInvalid for a ttl under 1ms or a Lock
// not from a Locker, ErrRedis if Redis fails (the TTL may have been set).
func (k *Lock) Renew(ctx context.Context, ttl time.Duration) error {
	if k == nil || k.locker == nil {
		return invalid("Renew of a Lock not returned by a Locker")
	}
	if err := checkLock(k.Name, ttl); err != nil {
		return err
	}
	n, err := lockRenew.Run(ctx, k.locker.client, k.locker.keys(k.Name)[:1], k.Token, ttl.Milliseconds()).Int64()
	switch {
	case err != nil:
		return redisErr(fmt.Sprintf("renewing lock %q", k.Name), mayHaveChanged, err)
	case n == 0:
		return fmt.Errorf("%w: lock %q (fence %d) expired or was taken by another holder; nothing changed", ErrNotHeld, k.Name, k.Fence)
	}
	return nil
}

// Release frees the lock if k still holds it; a lock held by another holder
// since k's expired is left alone. It returns an error wrapping ErrNotHeld
// when k no longer holds it (nothing changed), ErrInvalid for a Lock not
// from a Locker, ErrRedis if Redis fails (the lock may have been released;
// a retry is safe, as it compares tokens).
func (k *Lock) Release(ctx context.Context) error {
	if k == nil || k.locker == nil {
		return invalid("Release of a Lock not returned by a Locker")
	}
	n, err := lockRelease.Run(ctx, k.locker.client, k.locker.keys(k.Name)[:1], k.Token).Int64()
	switch {
	case err != nil:
		return redisErr(fmt.Sprintf("releasing lock %q", k.Name), mayHaveChanged, err)
	case n == 0:
		return fmt.Errorf("%w: lock %q (fence %d) expired or was taken by another holder; nothing changed", ErrNotHeld, k.Name, k.Fence)
	}
	return nil
}
