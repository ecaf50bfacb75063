package servicetest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// redisClusterStore has no container: `make services` starts a local
// cluster where redis-server is installed and prints REDIS_CLUSTER_URL.
var redisClusterStore = &store{
	name:   "Redis Cluster",
	envVar: "REDIS_CLUSTER_URL",
	ping: func(ctx context.Context, url string) error {
		opts, err := redis.ParseClusterURL(url)
		if err != nil {
			return err
		}
		c := redis.NewClusterClient(opts)
		defer c.Close()
		// Every master, so that a cluster with a slot range down fails here
		// rather than in the middle of a test.
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	},
}

// RedisClusterURL returns the URL of the resolved Redis Cluster, in the form
// redis.ParseClusterURL reads. Tests that connect with it must keep their
// keys under a prefix of their own (see RedisCluster).
func RedisClusterURL(tb testing.TB) string {
	tb.Helper()
	return redisClusterStore.resolve(tb)
}

// RedisCluster returns a client of the resolved Redis Cluster and a key
// prefix that no other test uses. The prefix holds no hash tag, so the
// test's keys spread over the slots and masters. When the test ends, every
// key under the prefix is deleted from every master (found with SCAN: the
// cluster is shared, so never KEYS or FLUSHDB) and the client is closed.
func RedisCluster(tb testing.TB) (*redis.ClusterClient, string) {
	tb.Helper()
	opts, err := redis.ParseClusterURL(RedisClusterURL(tb))
	if err != nil {
		tb.Fatalf("servicetest: %v", err)
	}
	client := redis.NewClusterClient(opts)
	prefix := uniqueName("polystore:test:") + ":"

	tb.Cleanup(func() {
		defer client.Close()
		ctx, cancel := cleanupContext()
		defer cancel()
		err := client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return deleteKeys(ctx, m, prefix)
		})
		if err != nil {
			tb.Errorf("servicetest: deleting keys %s* on the cluster's masters: %v", prefix, err)
		}
	})
	return client, prefix
}
