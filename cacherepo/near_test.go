package cacherepo_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errMustHit = errors.New("a hit must not load")

func mustHit(context.Context) (string, error) { return "", errMustHit }

// nearPair is two instances of one namespace, each with the near tier, on
// clients of their own (as two processes have), and the raw client of the
// second, named, so that a test can find its connections.
type nearPair struct {
	c1, c2  *cacherepo.Cache[string]
	raw2    redis.UniversalClient
	name2   string
	prefix  string
	cluster bool
}

func newNearPair(t *testing.T, cluster bool, opts cacherepo.Options) nearPair {
	t.Helper()
	if opts.Near == nil {
		opts.Near = &cacherepo.NearOptions{}
	}
	name := strings.ReplaceAll(fmt.Sprintf("cacherepo-near-%s-%d", t.Name(), time.Now().UnixNano()), "/", "-")
	var c1client, c2client redis.UniversalClient
	var prefix string
	if cluster {
		c1client, prefix = servicetest.RedisCluster(t)
		o, err := redis.ParseClusterURL(servicetest.RedisClusterURL(t))
		require.NoError(t, err)
		o.ClientName = name
		c := redis.NewClusterClient(o)
		t.Cleanup(func() { _ = c.Close() })
		c2client = c
	} else {
		c1client, prefix = servicetest.Redis(t)
		o, err := redis.ParseURL(servicetest.RedisURL(t))
		require.NoError(t, err)
		o.ClientName = name
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		c2client = c
	}
	opts.Namespace = prefix
	c1, err := cacherepo.New[string](c1client, opts)
	require.NoError(t, err)
	c2, err := cacherepo.New[string](c2client, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c1.Close(); _ = c2.Close() })
	p := nearPair{c1: c1, c2: c2, raw2: c2client, name2: name, prefix: prefix, cluster: cluster}
	awaitNear(t, c1)
	awaitNear(t, c2)
	return p
}

// awaitNear waits until c serves from its near tier (its subscription is
// up), using a probe key of its own.
func awaitNear(t *testing.T, c *cacherepo.Cache[string]) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "probe", "p", 0))
	eventually(t, "the near tier to serve", func() bool {
		before := c.Stats().NearHits
		for range 2 {
			_, err := c.GetOrLoad(ctx, "probe", mustHit)
			require.NoError(t, err)
		}
		return c.Stats().NearHits > before
	})
}

// readNear reads k on c twice and checks that the second read came from
// the near tier.
func readNear(t *testing.T, c *cacherepo.Cache[string], k, want string) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		got, err := c.GetOrLoad(ctx, k, mustHit)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	before := c.Stats().NearHits
	got, err := c.GetOrLoad(ctx, k, mustHit)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Greater(t, c.Stats().NearHits, before, "served from the near tier")
}

func topologies() []bool { return []bool{false, true} }

func topology(cluster bool) string {
	if cluster {
		return "cluster"
	}
	return "single node"
}

func TestNear_ChangeOnOneInstanceReachesTheOtherAndNoOlderValueFollows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// change runs on the first instance; want is what the second must
		// then read ("" for a miss).
		change func(ctx context.Context, c *cacherepo.Cache[string]) error
		want   string
	}{
		{"Set", func(ctx context.Context, c *cacherepo.Cache[string]) error { return c.Set(ctx, "k", "v2", 0) }, "v2"},
		{"SetMany", func(ctx context.Context, c *cacherepo.Cache[string]) error {
			return c.SetMany(ctx, map[string]string{"k": "v2"}, 0)
		}, "v2"},
		{"Delete", func(ctx context.Context, c *cacherepo.Cache[string]) error { return c.Delete(ctx, "k") }, ""},
		{"Invalidate", func(ctx context.Context, c *cacherepo.Cache[string]) error { return c.Invalidate(ctx, "k") }, ""},
		{"a load after the Redis entry is gone", func(ctx context.Context, c *cacherepo.Cache[string]) error {
			// As if the Redis TTL ended before the near tier's: the fill
			// replaces a value the other instance still holds.
			if err := c.Invalidate(ctx, "k"); err != nil {
				return err
			}
			_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v2", nil })
			return err
		}, "v2"},
	}
	for _, cluster := range topologies() {
		for _, tt := range tests {
			t.Run(topology(cluster)+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				p := newNearPair(t, cluster, cacherepo.Options{})
				require.NoError(t, p.c1.Set(ctx, "k", "v1", 0))
				readNear(t, p.c2, "k", "v1")

				require.NoError(t, tt.change(ctx, p.c1))
				read := func() string {
					v, err := p.c2.Get(ctx, "k")
					if errors.Is(err, cacherepo.ErrMiss) {
						return ""
					}
					require.NoError(t, err)
					return v
				}
				eventually(t, "the change to reach the second instance", func() bool { return read() == tt.want })
				for range 50 {
					require.Equal(t, tt.want, read(), "never an older value after the change was seen")
				}
				assert.Zero(t, p.c1.Stats().RedisErrors)
				assert.Zero(t, p.c2.Stats().RedisErrors)
			})
		}
	}
}

// killPubSub kills the pub/sub connections of the client named name (only
// those: the server is shared with other tests), on every node.
func killPubSub(t *testing.T, p nearPair) {
	t.Helper()
	ctx := context.Background()
	var killed int
	var mu sync.Mutex
	kill := func(ctx context.Context, node *redis.Client) error {
		list, err := node.ClientList(ctx).Result() // every type: filter below
		if err != nil {
			return err
		}
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, " name="+p.name2+" ") || !strings.Contains(line, " cmd=subscribe") && !strings.Contains(line, "flags=P") {
				continue
			}
			var id string
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "id="); ok {
					id = v
				}
			}
			if err := node.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				return err
			}
			mu.Lock()
			killed++
			mu.Unlock()
		}
		return nil
	}
	if p.cluster {
		o, err := redis.ParseClusterURL(servicetest.RedisClusterURL(t))
		require.NoError(t, err)
		admin := redis.NewClusterClient(o)
		defer admin.Close()
		require.NoError(t, admin.ForEachShard(ctx, kill))
	} else {
		o, err := redis.ParseURL(servicetest.RedisURL(t))
		require.NoError(t, err)
		admin := redis.NewClient(o)
		defer admin.Close()
		require.NoError(t, kill(ctx, admin))
	}
	require.Equal(t, 1, killed, "the second instance's pub/sub connection")
}

func TestNear_SubscriptionKilledFlushesTheTierAndNoStaleReadFollows(t *testing.T) {
	t.Parallel()
	for _, cluster := range topologies() {
		t.Run(topology(cluster), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			p := newNearPair(t, cluster, cacherepo.Options{})
			require.NoError(t, p.c1.Set(ctx, "k", "v1", 0))
			readNear(t, p.c2, "k", "v1")

			killPubSub(t, p)
			// Written while the second instance is not subscribed: its
			// message may be lost.
			require.NoError(t, p.c1.Set(ctx, "k", "v2", 0))
			eventually(t, "the second instance to notice", func() bool { return p.c2.Stats().SubscriptionLosses >= 1 })
			got, err := p.c2.GetOrLoad(ctx, "k", mustHit)
			require.NoError(t, err)
			assert.Equal(t, "v2", got, "the near tier was flushed")

			// The subscription comes back, and the tier serves again.
			awaitNear(t, p.c2)
			readNear(t, p.c2, "k", "v2")
			require.NoError(t, p.c1.Set(ctx, "k", "v3", 0))
			eventually(t, "the change after the reconnection", func() bool {
				v, err := p.c2.GetOrLoad(ctx, "k", mustHit)
				require.NoError(t, err)
				return v == "v3"
			})
		})
	}
}

func TestNear_LateOrDuplicatedMessageNeverBringsBackAnOldValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newNearPair(t, false, cacherepo.Options{})
	raw, _ := servicetest.Redis(t)
	require.NoError(t, p.c1.Set(ctx, "k", "v1", 0))
	readNear(t, p.c2, "k", "v1")
	require.NoError(t, p.c1.Set(ctx, "k", "v2", 0))
	eventually(t, "v2 to reach the second instance", func() bool {
		v, err := p.c2.GetOrLoad(ctx, "k", mustHit)
		require.NoError(t, err)
		return v == "v2"
	})
	// The messages of the v1 write, again and out of order: as a message
	// only ever drops a key, the worst it does is a reload.
	for range 3 {
		require.NoError(t, raw.Publish(ctx, "cacherepo:"+p.prefix, "0000000000000000 "+p.prefix+"k").Err())
	}
	for range 50 {
		v, err := p.c2.GetOrLoad(ctx, "k", mustHit)
		require.NoError(t, err)
		require.Equal(t, "v2", v)
	}
}

type profile struct {
	Name string         `json:"name"`
	Tags []string       `json:"tags"`
	Meta map[string]int `json:"meta"`
}

func TestNear_HitReturnsACopyTheCallerMayMutate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[profile](t, cacherepo.Options{Near: &cacherepo.NearOptions{}})
	t.Cleanup(func() { _ = c.Close() })
	want := profile{Name: "Ada", Tags: []string{"math"}, Meta: map[string]int{"age": 36}}
	require.NoError(t, c.Set(ctx, "ada", want, 0))
	load := func(context.Context) (profile, error) { return profile{}, errMustHit }
	eventually(t, "a near hit", func() bool {
		got, err := c.GetOrLoad(ctx, "ada", load)
		require.NoError(t, err)
		got.Name, got.Tags[0], got.Meta["age"] = "mutated", "mutated", 0
		return c.Stats().NearHits > 2
	})
	for range 3 {
		got, err := c.GetOrLoad(ctx, "ada", load)
		require.NoError(t, err)
		assert.Equal(t, want, got, "another caller's mutation is not seen")
		got.Tags[0] = "mutated again"
		got2, err := c.Get(ctx, "ada")
		require.NoError(t, err)
		assert.Equal(t, want, got2)
	}
}

func TestNear_InvalidateDuringALoadNeverLeavesTheOldValueInAnyTier(t *testing.T) {
	t.Parallel()
	for _, cluster := range topologies() {
		for _, lock := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/Lock=%v", topology(cluster), lock), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				p := newNearPair(t, cluster, cacherepo.Options{Lock: lock})
				d := &db{row: "old"}
				read, release := make(chan struct{}), make(chan struct{})
				done := make(chan string)
				go func() {
					v, err := p.c1.GetOrLoad(ctx, "row", func(context.Context) (string, error) {
						v := d.read()
						close(read)
						<-release
						return v, nil
					})
					assert.NoError(t, err)
					done <- v
				}()
				<-read
				d.write("new")
				require.NoError(t, p.c1.Invalidate(ctx, "row"))
				close(release)
				assert.Equal(t, "old", <-done)

				fresh := func(context.Context) (string, error) { return d.read(), nil }
				for range 20 {
					v, err := p.c1.GetOrLoad(ctx, "row", fresh)
					require.NoError(t, err)
					require.Equal(t, "new", v, "the invalidating instance never sees the old value again")
				}
				eventually(t, "the second instance to read the new value", func() bool {
					v, err := p.c2.GetOrLoad(ctx, "row", fresh)
					require.NoError(t, err)
					return v == "new"
				})
				for range 20 {
					v, err := p.c2.GetOrLoad(ctx, "row", fresh)
					require.NoError(t, err)
					require.Equal(t, "new", v)
				}
				assert.Equal(t, uint64(1), p.c1.Stats().StaleWritesRefused)
			})
		}
	}
}

func TestNear_InvalidOptionsAreRefused(t *testing.T) {
	t.Parallel()
	client, _ := servicetest.Redis(t)
	for name, n := range map[string]cacherepo.NearOptions{
		"negative MaxEntries": {MaxEntries: -1},
		"negative MaxBytes":   {MaxBytes: -1},
		"both bounds":         {MaxEntries: 10, MaxBytes: 1000},
		"negative TTL":        {TTL: -time.Second},
		"TTL under 1ms":       {TTL: time.Microsecond},
	} {
		_, err := cacherepo.New[string](client, cacherepo.Options{Near: &n})
		assert.ErrorIs(t, err, cacherepo.ErrInvalidOptions, name)
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"one": client.Options().Addr}})
	defer ring.Close()
	_, err := cacherepo.New[string](ring, cacherepo.Options{Near: &cacherepo.NearOptions{}})
	assert.ErrorIs(t, err, cacherepo.ErrInvalidOptions, "a Ring would route messages astray")
}

func TestCache_Lock_WaiterIsWokenByTheOtherProcessWrite(t *testing.T) {
	t.Parallel()
	for _, cluster := range topologies() {
		t.Run(topology(cluster), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			p := newNearPair(t, cluster, cacherepo.Options{Lock: true, LockWait: 10 * time.Second})
			var rt roundTrips
			p.raw2.AddHook(&rt)

			started, release := make(chan struct{}), make(chan struct{})
			var calls int
			first := make(chan string, 1)
			go func() {
				v, err := p.c1.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
					calls++
					close(started)
					<-release
					return "v", nil
				})
				assert.NoError(t, err)
				first <- v
			}()
			<-started
			rt.reset()
			second := make(chan string, 1)
			go func() {
				v, err := p.c2.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "second", nil })
				assert.NoError(t, err)
				second <- v
			}()
			eventually(t, "the second process to wait", func() bool { return p.c2.Stats().LockWaits == 1 })
			time.Sleep(150 * time.Millisecond) // polling every 5ms-50ms would send 5 GETs or more meanwhile
			close(release)
			assert.Equal(t, "v", <-first)
			assert.Equal(t, "v", <-second, "the waiter got the other process's value")
			assert.Equal(t, 1, calls)
			// The miss, the look right after registering for the key's
			// news, the look when woken; one more if a fallback poll fell
			// in. (A connection's handshake may show too: count GETs.)
			assert.LessOrEqual(t, rt.count("get"), 4, "GETs of the waiting process")
			t.Logf("waiting process: %d round trips: %s", rt.n.Load(), &rt)
		})
	}
}

func TestNear_IdleSubscriptionStaysHealthy(t *testing.T) {
	t.Parallel()
	for _, cluster := range topologies() {
		t.Run(topology(cluster), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			p := newNearPair(t, cluster, cacherepo.Options{})
			require.NoError(t, p.c1.Set(ctx, "k", "v1", 0))
			readNear(t, p.c2, "k", "v1")
			time.Sleep(3500 * time.Millisecond) // idle past the PING checks (one a second)
			assert.Zero(t, p.c2.Stats().SubscriptionLosses, "an idle subscription that answers its PINGs is healthy")
			readNear(t, p.c2, "k", "v1")
		})
	}
}

// holdGet is a hook that, once armed, holds the reply of the next GET of
// key until resume is closed (after signalling fetched).
type holdGet struct {
	key             string
	armed           atomic.Bool
	fetched, resume chan struct{}
}

func (h *holdGet) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *holdGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "get" && len(cmd.Args()) == 2 && cmd.Args()[1] == h.key && h.armed.CompareAndSwap(true, false) {
			close(h.fetched)
			<-h.resume
		}
		return err
	}
}

func TestNear_ReadRacingAChangeNeverStoresTheOldValue(t *testing.T) {
	t.Parallel()
	for _, cluster := range topologies() {
		t.Run(topology(cluster), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			p := newNearPair(t, cluster, cacherepo.Options{})
			require.NoError(t, p.c1.Set(ctx, "k", "v1", 0))
			h := &holdGet{key: p.prefix + "k", fetched: make(chan struct{}), resume: make(chan struct{})}
			h.armed.Store(true)
			p.raw2.AddHook(h)

			got := make(chan string, 1)
			go func() {
				v, err := p.c2.GetOrLoad(ctx, "k", mustHit)
				assert.NoError(t, err)
				got <- v
			}()
			<-h.fetched // the second instance has read v1 from Redis, not yet stored it
			require.NoError(t, p.c1.Set(ctx, "k", "v2", 0))
			// Let the message of v2 reach the second instance before its
			// read goes on (were it later, it would drop v1 anyway).
			time.Sleep(100 * time.Millisecond)
			close(h.resume)
			assert.Equal(t, "v1", <-got, "the racing read returns what it read")
			for range 20 {
				v, err := p.c2.GetOrLoad(ctx, "k", mustHit)
				require.NoError(t, err)
				require.Equal(t, "v2", v, "what the racing read fetched was not stored in the near tier")
			}
		})
	}
}

// countingCodec is JSON that counts its decodes.
type countingCodec struct {
	cacherepo.JSON
	decodes atomic.Int64
}

func (c *countingCodec) Unmarshal(data []byte, v any) error {
	c.decodes.Add(1)
	return c.JSON.Unmarshal(data, v)
}

func TestNear_SharedServesTheDecodedValueWithoutDecoding(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("Shared=%v", shared), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			codec := &countingCodec{}
			c, _, _ := newCache[string](t, cacherepo.Options{Codec: codec, Near: &cacherepo.NearOptions{Shared: shared}})
			t.Cleanup(func() { _ = c.Close() })
			awaitNear(t, c)
			require.NoError(t, c.Set(ctx, "k", "v", 0))
			readNear(t, c, "k", "v")
			before := codec.decodes.Load()
			for range 10 {
				v, err := c.GetOrLoad(ctx, "k", mustHit)
				require.NoError(t, err)
				require.Equal(t, "v", v)
				v, err = c.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, "v", v)
			}
			if shared {
				assert.Equal(t, before, codec.decodes.Load(), "near hits of a Shared tier decode nothing")
			} else {
				assert.Equal(t, before+20, codec.decodes.Load(), "every near hit decodes a copy of its own")
			}
		})
	}
}

func TestNear_AfterCloseEveryReadGoesToRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newNearPair(t, false, cacherepo.Options{})
	require.NoError(t, p.c1.Set(ctx, "k", "v1", 0))
	readNear(t, p.c2, "k", "v1")
	require.NoError(t, p.c2.Close())
	require.NoError(t, p.c2.Close(), "Close twice")
	before := p.c2.Stats().NearHits
	require.NoError(t, p.c1.Set(ctx, "k", "v2", 0))
	v, err := p.c2.GetOrLoad(ctx, "k", mustHit)
	require.NoError(t, err)
	assert.Equal(t, "v2", v, "a closed Cache no longer hears of changes, so it does not use its tier")
	assert.Equal(t, before, p.c2.Stats().NearHits)
}

func TestNear_NewDoesNotWaitForAnUnresponsiveServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	var cut atomic.Bool
	hangUp := func() {
		mu.Lock()
		defer mu.Unlock()
		_ = ln.Close()
		for _, c := range conns {
			_ = c.Close()
		}
	}
	t.Cleanup(hangUp)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn) // accepted, never answered
			mu.Unlock()
		}
	}()
	// A watchdog, not a timing assertion: if New waits for the server, it
	// waits forever (no read timeout), until this hangs up.
	watchdog := time.AfterFunc(30*time.Second, func() { cut.Store(true); hangUp() })
	defer watchdog.Stop()
	client := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ReadTimeout: -1, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })

	c, err := cacherepo.New[string](client, cacherepo.Options{Lock: true, Near: &cacherepo.NearOptions{}})
	require.NoError(t, err)
	assert.False(t, cut.Load(), "New returned without waiting for the subscription's connection")
	_ = c.Close()
}
