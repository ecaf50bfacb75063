package cacherepo

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// A miss is filled with the entry its GET saw as the expectation: the
// loaded value is written only if the key still holds exactly that (nothing,
// an invalidation marker, another loader's lease or an entry it could not
// decode), atomically: SET NX when it saw nothing, casScript otherwise. Delete and Invalidate replace whatever
// the key holds with an invalidation marker of their own (a fresh random
// token) that lives for markerTTL, so a load that saw the key before them
// can never be written after them, whether or not the key held anything;
// a load that took longer than LeaseTTL is not written at all, so it never
// outlives the marker. That costs no round trip before the loader runs:
// GET, load, write, as hand-written cache-aside does.
//
// With Options.Lock, other processes must see that a load is under way
// before it starts, so the miss first stores a lease (a token of kind 'l')
// in the key (acquireScript), loads, and writes over that lease: one round
// trip more. One key per script either way, so no Cluster slot rules.

// acquireScript returns the key's current entry, or, when it has none (or
// holds an invalidation marker, or exactly ARGV[3], an entry the caller
// could not decode), stores the lease ARGV[1] for ARGV[2] ms and returns
// nil.
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[3] and string.sub(v, 1, 1) ~= 'i' then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)

// casScript writes ARGV[2] for ARGV[3] ms if the key holds exactly ARGV[1]
// (the entry the load saw, the loader's lease, or the value an early
// refresh replaces; "" for no entry at all: entries are never empty);
// returns 1 if it wrote, 0 if not.
// It then publishes ARGV[5] on the channel ARGV[4], so that the other
// instances drop the key from their near tier and Lock waiters wake.
var casScript = redis.NewScript(`
if (redis.call('GET', KEYS[1]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return 1
end
return 0`)

// releaseScript deletes the key if it still holds the lease ARGV[1], so that
// processes waiting on a failed load stop waiting.
// It publishes ARGV[3] on the channel ARGV[2] when it deleted, to wake them.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0`)

// fallbackPoll is how often a Lock waiter looks at the key while the
// subscription that should tell it is healthy.
const fallbackPoll = 200 * time.Millisecond

// lease is the outcome of acquire.
type lease struct {
	token  string // the lease entry the write must find ("l" + hex)
	own    bool   // this call stored it (else another loader did)
	cached []byte // the key already held a value or tombstone: no load
}

// acquire takes (or joins) the lease of key rk. replace is an entry the
// caller could not decode and wants overwritten; nil otherwise.
func (c *Cache[T]) acquire(ctx context.Context, rk string, replace []byte) (lease, error) {
	tok := newLease()
	return call(c, ctx, func(ctx context.Context) (lease, error) {
		b, err := acquireScript.Run(ctx, c.client, []string{rk}, tok, c.opts.LeaseTTL.Milliseconds(), replace).Text()
		return acquired(tok, b, err)
	})
}

// acquired turns the reply of acquireScript, run to store the lease tok,
// into a lease.
func acquired(tok, reply string, err error) (lease, error) {
	switch {
	case errors.Is(err, redis.Nil):
		return lease{token: tok, own: true}, nil
	case err != nil:
		return lease{}, err
	case len(reply) > 0 && reply[0] == kindLease:
		return lease{token: reply}, nil
	}
	return lease{cached: []byte(reply)}, nil
}

// cas writes entry for ttl if rk still holds expect; it reports whether it
// wrote.
func (c *Cache[T]) cas(ctx context.Context, rk, expect string, entry []byte, ttl time.Duration) (bool, error) {
	return call(c, ctx, func(ctx context.Context) (bool, error) {
		n, err := casScript.Run(ctx, c.client, []string{rk}, expect, entry, ttl.Milliseconds(), c.channel, c.message(rk)).Int()
		return n == 1, err
	})
}

// release deletes rk if it still holds the lease token.
func (c *Cache[T]) release(ctx context.Context, rk, token string) error {
	return c.run(ctx, func(ctx context.Context) error {
		return releaseScript.Run(ctx, c.client, []string{rk}, token, c.channel, c.message(rk)).Err()
	})
}

// waitForLoad waits while another process holds rk's lease l (Lock). It
// returns the entry that process cached, or, when LockWait runs out or Redis
// fails, cached == nil and the lease to load under: the same one, a new one
// of ours if the other load failed and released it, or a newer one if the
// key was invalidated meanwhile.
//
// It looks at the key when the namespace's channel says the key changed
// (the other process's write or release publishes it), and polls only as a
// fallback: every fallbackPoll while the subscription is healthy, in case a
// message is lost, or 5ms doubling to 50ms while it is not.
func (c *Cache[T]) waitForLoad(ctx context.Context, key, rk string, l lease) (lease, error) {
	c.event(ctx, EventLockWait, key, nil, 0)
	deadline := time.Now().Add(c.opts.LockWait)
	var wake <-chan struct{}
	look := false // look at once: a message sent before wait was registered is missed
	if c.hub != nil {
		ch, cancel := c.hub.wait(rk)
		defer cancel()
		wake, look = ch, true
	}
	delay := 5 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return l, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return l, nil
		}
		if !look {
			wait := min(delay, left)
			if c.hub != nil && c.hub.healthy.Load() {
				wait = min(fallbackPoll, left)
			} else {
				delay = min(2*delay, 50*time.Millisecond)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return l, ctx.Err()
			case <-wake:
			case <-t.C:
			}
			t.Stop()
		}
		look = false

		b, err := c.get(ctx, rk)
		switch {
		case errors.Is(err, redis.Nil), err == nil && len(b) > 0 && b[0] == kindMarker:
			// The other load failed and released its lease, or the key was
			// invalidated (its write will be refused): take a lease again
			// (maybe ours this time).
			nl, err := c.acquire(ctx, rk, nil)
			if err != nil {
				c.event(ctx, EventRedisError, key, err, 0)
				return l, nil
			}
			if nl.own || nl.cached != nil {
				return nl, nil
			}
			l = nl
		case err != nil:
			c.event(ctx, EventRedisError, key, err, 0)
			return l, nil
		case len(b) > 0 && b[0] == kindLease:
			l.token = string(b)
		default:
			return lease{cached: b}, nil
		}
	}
}
