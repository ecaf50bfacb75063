package redisrepo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// CounterOptions configures Counters. The zero value is ready to use: every
// zero field means the default named in its comment.
type CounterOptions struct {
	// Prefix starts every counter's key: Prefix+name, and
	// Prefix+name+":"+window start (such as ":20261130T142100Z") with a
	// Window. Default: "counter:".
	Prefix string

	// Window makes every counter count per window of this length (Minutely,
	// Hourly, Daily, Weekly or any whole number of seconds, aligned as
	// Leaderboard windows are): one key per counter and window, so a count
	// starts again at 0 in each window. Default: 0 (one key per counter, no
	// expiry).
	Window time.Duration

	// Retain is how long a window's key is kept after its window ends, so
	// that the previous window can still be read (At). Default: one Window.
	Retain time.Duration
}

const defaultCounterPrefix = "counter:"

// Counters are named int64 counters in Redis: atomic increments (INCRBY),
// exact however many processes increment at once, optionally one count per
// time window. They are safe for concurrent use and hold no goroutines.
type Counters struct {
	client redis.UniversalClient
	prefix string
	window window
	// mget: the client sends MGET to one server (a plain or Sentinel
	// client), not to shards (Cluster, Ring), where keys may span slots.
	mget bool
}

// NewCounters returns Counters over client (a *redis.Client,
// *redis.ClusterClient or *redis.Ring). Every counter is one key (one per
// window): any client kind works without hash tags. It returns an error
// wrapping ErrInvalid for a nil client or an out-of-range option.
func NewCounters(client redis.UniversalClient, opts CounterOptions) (*Counters, error) {
	if client == nil {
		return nil, invalid("nil client")
	}
	w, err := newWindow(opts.Window, opts.Retain)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultCounterPrefix
	}
	_, single := client.(*redis.Client)
	return &Counters{client: client, prefix: opts.Prefix, window: w, mget: single}, nil
}

// At returns the same Counters fixed to the window that holds t (the
// previous minute's counts: c.At(time.Now().Add(-time.Minute))).
// Incrementing a window whose key has already expired stores nothing. On
// Counters without Window, At returns c.
func (c *Counters) At(t time.Time) *Counters {
	if c.window.period == 0 {
		return c
	}
	d := *c
	d.window.at = t
	return &d
}

// Key returns the Redis key of counter name now (in the current window, or
// At's).
func (c *Counters) Key(name string) string {
	k, _ := c.key(name)
	return k
}

func (c *Counters) key(name string) (string, int64) {
	suffix, at, ok := c.window.current()
	if !ok {
		return c.prefix + name, 0
	}
	return c.prefix + name + suffix, at
}

// incrExpire increments a windowed counter and sets its expiry in the same
// call. KEYS: counter. ARGV: delta, expire-at ms.
var incrExpire = redis.NewScript(`local v = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return v`)

// Incr adds delta (which may be negative) to counter name and returns the
// new count; a counter never incremented starts at 0. With a Window, the
// count is the window's, and its key expires Retain after the window ends.
// It returns an error wrapping ErrInvalid for an empty name, ErrRedis if
// Redis fails (the increment may have been applied: retrying may count it
// twice) or if the count would overflow int64 (nothing changed).
func (c *Counters) Incr(ctx context.Context, name string, delta int64) (int64, error) {
	if name == "" {
		return 0, invalid("empty counter name")
	}
	key, at := c.key(name)
	var (
		n   int64
		err error
	)
	if at == 0 {
		n, err = c.client.IncrBy(ctx, key, delta).Result()
	} else {
		n, err = incrExpire.Run(ctx, c.client, []string{key}, delta, at).Int64()
	}
	if err != nil {
		return 0, redisErr("INCRBY "+key, mayHaveChanged, err)
	}
	return n, nil
}

// Get returns the count of name: 0 when it was never incremented or its
// window expired (a counter has no "not found"). It returns an error
// wrapping ErrInvalid for an empty name, ErrRedis if Redis fails, ErrCodec
// if the key holds something that is not an integer.
func (c *Counters) Get(ctx context.Context, name string) (int64, error) {
	if name == "" {
		return 0, invalid("empty counter name")
	}
	key, _ := c.key(name)
	s, err := c.client.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, nil
	case err != nil:
		return 0, redisErr("GET "+key, nothingChanged, err)
	}
	return parseCount(key, s)
}

func parseCount(key, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, codecErr(fmt.Sprintf("counter %s", key), err)
	}
	return n, nil
}

// GetMany returns the counts of names, in the order given (0 for a counter
// never incremented), read in one round trip: one MGET on a single node; on
// Cluster and Ring a pipeline of GETs that go-redis sends to each node
// concurrently, since the keys may span slots. It returns an error wrapping
// ErrInvalid for an empty name, ErrRedis if Redis fails, ErrCodec if a key
// holds something that is not an integer.
func (c *Counters) GetMany(ctx context.Context, names ...string) ([]int64, error) {
	keys := make([]string, len(names))
	for i, name := range names {
		if name == "" {
			return nil, invalid("empty counter name at index %d", i)
		}
		keys[i], _ = c.key(name)
	}
	out := make([]int64, len(names))
	if len(names) == 0 {
		return out, nil
	}
	if c.mget {
		vs, err := c.client.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, redisErr(fmt.Sprintf("MGET of %d counters", len(keys)), nothingChanged, err)
		}
		for i, v := range vs {
			if s, ok := v.(string); ok {
				if out[i], err = parseCount(keys[i], s); err != nil {
					return nil, err
				}
			}
		}
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, redisErr(fmt.Sprintf("GET of %d counters", len(keys)), nothingChanged, err)
	}
	for i, cmd := range cmds {
		s, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return nil, redisErr("GET "+keys[i], nothingChanged, err)
		}
		if out[i], err = parseCount(keys[i], s); err != nil {
			return nil, err
		}
	}
	return out, nil
}
