package servicetest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

var redisStore = &store{
	name:   "Redis",
	envVar: "REDIS_URL",
	ping: func(ctx context.Context, url string) error {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return err
		}
		c := redis.NewClient(opts)
		defer c.Close()
		return c.Ping(ctx).Err()
	},
	start: func(ctx context.Context) (string, error) {
		c, err := tcredis.Run(ctx, "redis:7-alpine")
		if err != nil {
			return "", err
		}
		return c.ConnectionString(ctx)
	},
}

// RedisURL returns the URL of the resolved Redis server. Tests that connect
// with it must keep their keys under a prefix of their own (see Redis).
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return redisStore.resolve(tb)
}

// Redis returns a client of the resolved Redis server and a key prefix that
// no other test uses. When the test ends, every key under the prefix is
// deleted (found with SCAN: the server is shared, so never KEYS or FLUSHDB)
// and the client is closed. The test must keep all its keys under the prefix.
func Redis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	opts, err := redis.ParseURL(RedisURL(tb))
	if err != nil {
		tb.Fatalf("servicetest: %v", err)
	}
	client := redis.NewClient(opts)
	prefix := uniqueName("polystore:test:") + ":"

	tb.Cleanup(func() {
		defer client.Close()
		ctx, cancel := cleanupContext()
		defer cancel()
		if err := deleteKeys(ctx, client, prefix); err != nil {
			tb.Errorf("servicetest: deleting keys %s*: %v", prefix, err)
		}
	})
	return client, prefix
}

// deleteKeys removes every key of server c that starts with prefix. prefix
// holds no glob characters, so it is safe as a MATCH pattern. Each batch is
// one pipeline of single-key UNLINKs: a Cluster node refuses a multi-key
// UNLINK whose keys hash to different slots.
func deleteKeys(ctx context.Context, c *redis.Client, prefix string) error {
	iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
	batch := make([]string, 0, 500)
	flush := func() error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Unlink(ctx, k)
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return flush()
	}
	return nil
}
