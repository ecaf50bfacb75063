package redisrepo_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// eachRedis runs test on a single Redis node, on the Redis Cluster and
// through a one-shard Ring, each with a key prefix of its own: every
// behaviour of the package must hold on all of them, and on the Cluster a
// script that touched keys of two slots would fail with CROSSSLOT.
func eachRedis(t *testing.T, test func(t *testing.T, client redis.UniversalClient, prefix string)) {
	t.Helper()
	t.Run("node", func(t *testing.T) {
		t.Parallel()
		client, prefix := servicetest.Redis(t)
		test(t, client, prefix)
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		client, prefix := servicetest.RedisCluster(t)
		test(t, client, prefix)
	})
	t.Run("ring", func(t *testing.T) {
		t.Parallel()
		// A one-shard Ring on the node: the code paths of a sharding client
		// that is not a Cluster (pipelines instead of MGET, scripts routed
		// by their first key). The node's client cleans the prefix up.
		node, prefix := servicetest.Redis(t)
		ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"shard": node.Options().Addr}, DB: node.Options().DB})
		t.Cleanup(func() { _ = ring.Close() })
		test(t, ring, prefix)
	})
}

// dump returns every key under prefix with a printable form of what it
// holds, from every master of a Cluster.
func dump(t *testing.T, client redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	out := map[string]string{}
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			typ, err := c.Type(ctx, k).Result()
			if err != nil {
				return err
			}
			var v any
			switch typ {
			case "string":
				v, err = c.Get(ctx, k).Result()
			case "hash":
				v, err = c.HGetAll(ctx, k).Result()
			case "zset":
				v, err = c.ZRangeWithScores(ctx, k, 0, -1).Result()
			case "set":
				v, err = c.SMembers(ctx, k).Result()
			case "list":
				v, err = c.LRange(ctx, k, 0, -1).Result()
			case "none":
				continue // expired since SCAN saw it
			default:
				return fmt.Errorf("unexpected type %s of %s", typ, k)
			}
			if err != nil {
				return err
			}
			mu.Lock()
			out[k] = fmt.Sprint(v)
			mu.Unlock()
		}
		return iter.Err()
	}
	switch c := client.(type) {
	case *redis.ClusterClient:
		require.NoError(t, c.ForEachMaster(ctx, scan))
	case *redis.Client:
		require.NoError(t, scan(ctx, c))
	case *redis.Ring:
		require.NoError(t, c.ForEachShard(ctx, scan))
	default:
		t.Fatalf("dump: unexpected client %T", client)
	}
	return out
}

// pttl returns the remaining TTL of key in milliseconds (-2: no key, -1: no
// expiry).
func pttl(t *testing.T, client redis.UniversalClient, key string) int64 {
	t.Helper()
	d, err := client.PTTL(context.Background(), key).Result()
	require.NoError(t, err)
	if d < 0 {
		return int64(d) // go-redis keeps -1 and -2 as raw durations
	}
	return d.Milliseconds()
}

// servicetestRedis is servicetest.Redis for tests that need one backend
// only (argument checks, which never reach Redis).
func servicetestRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	return servicetest.Redis(t)
}
