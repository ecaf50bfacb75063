package cacherepo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// roundTrips is a go-redis hook that counts what the client sends: one per
// command, one per pipeline (go-redis sends a pipeline in one write per
// node, and a Cluster client splits it per node below this hook).
type roundTrips struct {
	n    atomic.Int64
	mu   sync.Mutex
	cmds []string
}

func (r *roundTrips) record(name string) {
	r.n.Add(1)
	r.mu.Lock()
	r.cmds = append(r.cmds, name)
	r.mu.Unlock()
}

func (r *roundTrips) reset() {
	r.mu.Lock()
	r.n.Store(0)
	r.cmds = nil
	r.mu.Unlock()
}

// count returns how many commands named name were sent.
func (r *roundTrips) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.cmds {
		if c == name {
			n++
		}
	}
	return n
}

func (r *roundTrips) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.cmds)
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

// offPath names the commands of a new connection's handshake and of the
// cache's pub/sub subscription: they share the client's hooks, but run on
// a connection of their own when it (re)connects, not on a call's path, so
// a count must not depend on when they happen to land.
var offPath = map[string]bool{
	"hello": true, "auth": true, "client": true, "select": true, "readonly": true,
	"ping": true, "subscribe": true, "ssubscribe": true, "psubscribe": true,
	"unsubscribe": true, "sunsubscribe": true, "punsubscribe": true,
}

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !offPath[cmd.Name()] {
			r.record(cmd.Name())
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || !offPath[cmds[0].Name()] {
			r.record("pipeline")
		}
		return next(ctx, cmds)
	}
}

func getManyOp(ctx context.Context, c *cacherepo.Cache[string], key string) error {
	_, err := c.GetManyOrLoad(ctx, []string{key, key + "b"}, func(_ context.Context, missing []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range missing {
			out[k] = "v"
		}
		return out, nil
	})
	return err
}

func TestCache_RoundTrips_MissIsTwoLikeRawHitIsOne(t *testing.T) {
	t.Parallel()
	type client interface {
		redis.UniversalClient
		AddHook(redis.Hook)
	}
	clients := []struct {
		name string
		new  func(t *testing.T) (client, string)
	}{
		{"single node", func(t *testing.T) (client, string) { return servicetest.Redis(t) }},
		{"cluster", func(t *testing.T) (client, string) { return servicetest.RedisCluster(t) }},
	}
	tests := []struct {
		name string
		opts cacherepo.Options
		// op runs once on key "warm" (so that the scripts are cached on its
		// node) and once, counted, on key; then want round trips.
		op   func(ctx context.Context, c *cacherepo.Cache[string], key string) error
		want int64
	}{
		{"GetOrLoad miss: GET, write", cacherepo.Options{}, func(ctx context.Context, c *cacherepo.Cache[string], key string) error {
			_, err := c.GetOrLoad(ctx, key, func(context.Context) (string, error) { return "v", nil })
			return err
		}, 2},
		{"GetOrLoad miss of a record that does not exist: GET, tombstone", cacherepo.Options{}, func(ctx context.Context, c *cacherepo.Cache[string], key string) error {
			_, err := c.GetOrLoad(ctx, key, func(context.Context) (string, error) { return "", cacherepo.ErrNotFound })
			if errors.Is(err, cacherepo.ErrNotFound) {
				return nil
			}
			return err
		}, 2},
		{"GetOrLoad miss with Lock: GET, lease, write", cacherepo.Options{Lock: true}, func(ctx context.Context, c *cacherepo.Cache[string], key string) error {
			_, err := c.GetOrLoad(ctx, key, func(context.Context) (string, error) { return "v", nil })
			return err
		}, 3},
		{"GetManyOrLoad miss: read, pipelined write", cacherepo.Options{}, getManyOp, 2},
		{"GetManyOrLoad miss with Lock: read, leases, pipelined write", cacherepo.Options{Lock: true}, getManyOp, 3},
		{"GetOrLoad miss with the near tier: GET, write; its hit: none", cacherepo.Options{Near: &cacherepo.NearOptions{}}, func(ctx context.Context, c *cacherepo.Cache[string], key string) error {
			_, err := c.GetOrLoad(ctx, key, func(context.Context) (string, error) { return "v", nil })
			return err
		}, 2},
	}
	for _, cl := range clients {
		for _, tt := range tests {
			t.Run(cl.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				client, prefix := cl.new(t)
				var rt roundTrips
				client.AddHook(&rt)
				tt.opts.Namespace = prefix
				c, err := cacherepo.New[string](client, tt.opts)
				require.NoError(t, err)
				t.Cleanup(func() { _ = c.Close() })
				wantHit := int64(1)
				if tt.opts.Near != nil {
					awaitNear(t, c)
					wantHit = 0 // served in process
				}
				// Keys of one slot (hash tag), so that the warm-up caches the
				// scripts on the node of the counted calls (a first EVALSHA
				// on a node costs a NOSCRIPT round trip more).
				key := "{k}"
				require.NoError(t, tt.op(ctx, c, "{k}warm"))

				count := func(what string, want int64) {
					t.Helper()
					rt.reset()
					require.NoError(t, tt.op(ctx, c, key))
					assert.Equal(t, want, rt.n.Load(), "round trips of %s", what)
				}
				count("a miss of a key never cached", tt.want)
				count("a hit", wantHit)
				require.NoError(t, c.Invalidate(ctx, key, key+"b"))
				count("a miss after Invalidate", tt.want)
				assert.Zero(t, c.Stats().RedisErrors)
			})
		}
	}
}
