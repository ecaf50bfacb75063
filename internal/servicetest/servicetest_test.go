package servicetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// pairBarrier lets two parallel subtests wait for each other, so that both
// have written before either reads: the isolation checks then really overlap.
type pairBarrier struct {
	wg sync.WaitGroup
}

func newPairBarrier() *pairBarrier {
	b := &pairBarrier{}
	b.wg.Add(2)
	return b
}

func (b *pairBarrier) arriveAndWait() {
	b.wg.Done()
	b.wg.Wait()
}

func TestPostgres_ParallelTestsNeverSeeEachOthersRows(t *testing.T) {
	barrier := newPairBarrier()
	for _, who := range []string{"alice", "bob"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := Postgres(t)

			_, err := pool.Exec(ctx, `CREATE TABLE items (owner text NOT NULL)`)
			require.NoError(t, err, "the same table name in both tests must not clash")
			_, err = pool.Exec(ctx, `INSERT INTO items (owner) VALUES ($1)`, who)
			require.NoError(t, err)

			barrier.arriveAndWait()

			rows, err := pool.Query(ctx, `SELECT owner FROM items`)
			require.NoError(t, err)
			owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			assert.Equal(t, []string{who}, owners)
		})
	}
}

func TestPostgres_DatabaseIsDroppedWhenTheTestEnds(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		pool := Postgres(t)
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name))
	})
	require.True(t, strings.HasPrefix(name, "polystore_test_"), "database %q", name)

	conn, err := pgx.Connect(context.Background(), postgresStore.resolve(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var exists bool
	require.NoError(t, conn.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	assert.False(t, exists, "database %s must be dropped at cleanup", name)
}

// serverKeys returns the keys of server c matching pattern. It follows the
// SCAN cursor to the end: one SCAN call covers only part of a server that
// other tests share.
func serverKeys(t *testing.T, c *redis.Client, pattern string) []string {
	t.Helper()
	keys, err := scanAll(context.Background(), c, pattern)
	require.NoError(t, err)
	return keys
}

func scanAll(ctx context.Context, c *redis.Client, pattern string) ([]string, error) {
	var keys []string
	iter := c.Scan(ctx, 0, pattern, 500).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

func TestRedis_ParallelTestsNeverSeeEachOthersKeys(t *testing.T) {
	barrier := newPairBarrier()
	prefixes := make(chan string, 2)
	for _, who := range []string{"alice", "bob"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			client, prefix := Redis(t)
			prefixes <- prefix

			require.NoError(t, client.Set(ctx, prefix+"owner", who, 0).Err())
			barrier.arriveAndWait()

			got, err := client.Get(ctx, prefix+"owner").Result()
			require.NoError(t, err)
			assert.Equal(t, who, got)
			assert.Equal(t, []string{prefix + "owner"}, serverKeys(t, client, prefix+"*"))
		})
	}
	t.Cleanup(func() {
		close(prefixes)
		var distinct []string
		for p := range prefixes {
			distinct = append(distinct, p)
		}
		assert.Len(t, distinct, 2)
		assert.NotEqual(t, distinct[0], distinct[1])
	})
}

func TestRedis_KeysUnderThePrefixAreDeletedWhenTheTestEnds(t *testing.T) {
	var prefix string
	t.Run("user", func(t *testing.T) {
		client, p := Redis(t)
		prefix = p
		ctx := context.Background()
		// More keys than one SCAN batch, to exercise the cursor loop.
		pipe := client.Pipeline()
		for i := range 1200 {
			pipe.Set(ctx, fmt.Sprintf("%sk%d", p, i), i, 0)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
	})

	client, _ := Redis(t)
	assert.Empty(t, serverKeys(t, client, prefix+"*"))
}

// clusterKeys returns the keys matching pattern on every master of the
// cluster, by master address.
func clusterKeys(t *testing.T, c *redis.ClusterClient, pattern string) map[string][]string {
	t.Helper()
	var mu sync.Mutex
	byMaster := map[string][]string{}
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		found, err := scanAll(ctx, m, pattern)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if len(found) > 0 {
			byMaster[m.Options().Addr] = found
		}
		return nil
	})
	require.NoError(t, err)
	return byMaster
}

func TestRedisCluster_ParallelTestsNeverSeeEachOthersKeys(t *testing.T) {
	barrier := newPairBarrier()
	prefixes := make(chan string, 2)
	for _, who := range []string{"alice", "bob"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			client, prefix := RedisCluster(t)
			prefixes <- prefix

			require.NoError(t, client.Set(ctx, prefix+"owner", who, 0).Err())
			barrier.arriveAndWait()

			got, err := client.Get(ctx, prefix+"owner").Result()
			require.NoError(t, err)
			assert.Equal(t, who, got)
			var all []string
			for _, keys := range clusterKeys(t, client, prefix+"*") {
				all = append(all, keys...)
			}
			assert.Equal(t, []string{prefix + "owner"}, all)
		})
	}
	t.Cleanup(func() {
		close(prefixes)
		var distinct []string
		for p := range prefixes {
			distinct = append(distinct, p)
		}
		assert.Len(t, distinct, 2)
		assert.NotEqual(t, distinct[0], distinct[1])
	})
}

func TestRedisCluster_KeysUnderThePrefixAreDeletedFromEveryMasterWhenTheTestEnds(t *testing.T) {
	var prefix string
	var mastersUsed int
	t.Run("user", func(t *testing.T) {
		client, p := RedisCluster(t)
		prefix = p
		ctx := context.Background()
		// More keys than one SCAN batch, spread over the slots of every
		// master (the pipeline is split per node).
		pipe := client.Pipeline()
		for i := range 1200 {
			pipe.Set(ctx, fmt.Sprintf("%sk%d", p, i), i, 0)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		mastersUsed = len(clusterKeys(t, client, p+"*"))
	})
	require.GreaterOrEqual(t, mastersUsed, 2, "the keys must span several masters for this test to mean anything")

	client, _ := RedisCluster(t)
	assert.Empty(t, clusterKeys(t, client, prefix+"*"), "keys left on some master")
}

func TestMongo_ParallelTestsNeverSeeEachOthersDocuments(t *testing.T) {
	barrier := newPairBarrier()
	for _, who := range []string{"alice", "bob"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			coll := Mongo(t).Collection("items")

			_, err := coll.InsertOne(ctx, bson.D{{Key: "owner", Value: who}})
			require.NoError(t, err)
			barrier.arriveAndWait()

			cur, err := coll.Find(ctx, bson.D{})
			require.NoError(t, err)
			var docs []struct {
				Owner string `bson:"owner"`
			}
			require.NoError(t, cur.All(ctx, &docs))
			require.Len(t, docs, 1)
			assert.Equal(t, who, docs[0].Owner)
		})
	}
}

func TestMongo_DatabaseIsDroppedWhenTheTestEnds(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		db := Mongo(t)
		name = db.Name()
		_, err := db.Collection("items").InsertOne(context.Background(), bson.D{{Key: "x", Value: 1}})
		require.NoError(t, err)
	})

	names, err := Mongo(t).Client().ListDatabaseNames(context.Background(), bson.D{{Key: "name", Value: name}})
	require.NoError(t, err)
	assert.Empty(t, names, "database %s must be dropped at cleanup", name)
}

// recordingTB stands in for a test to observe how resolve ends one.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordingTB) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }
func (r *recordingTB) Errorf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordingTB) Cleanup(func())                 {}
func (r *recordingTB) Setenv(key, value string)       {}
func (r *recordingTB) Logf(format string, a ...any)   {}
func (r *recordingTB) Context() context.Context       { return context.Background() }
func (r *recordingTB) Name() string                   { return "recording" }

func TestResolve(t *testing.T) {
	noDocker := func() bool { return false }
	tests := []struct {
		name      string
		envURL    string
		require   string
		wantFatal string // substring; empty means no failure
		wantSkip  string
		noStart   bool // a store without containers, as Redis Cluster
	}{
		{
			name:      "configured URL that does not answer fails naming it",
			envURL:    "redis://127.0.0.1:1/0",
			wantFatal: "REDIS_URL=redis://127.0.0.1:1/0 does not answer",
		},
		{
			name:      "configured URL that does not answer fails even when skipping is allowed",
			envURL:    "redis://127.0.0.1:1/0",
			require:   "0",
			wantFatal: "redis://127.0.0.1:1/0",
		},
		{
			name:     "no server skips and says how to get one",
			wantSkip: "set REDIS_URL (run `make services`",
		},
		{
			name:     "no Redis Cluster skips and says to run make services",
			noStart:  true,
			wantSkip: "no Redis Cluster: set REDIS_URL (run `make services`",
		},
		{
			name:      "no Redis Cluster fails when services are required",
			noStart:   true,
			require:   "1",
			wantFatal: "POLYSTORE_REQUIRE_SERVICES=1 forbids skipping",
		},
		{
			name:      "no server fails when services are required",
			require:   "1",
			wantFatal: "POLYSTORE_REQUIRE_SERVICES=1 forbids skipping",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("REDIS_URL", tt.envURL)
			t.Setenv(RequireEnv, tt.require)
			s := &store{name: "Redis", envVar: "REDIS_URL", ping: redisStore.ping, start: redisStore.start, dockerCheck: noDocker}
			if tt.noStart {
				s.name, s.start = "Redis Cluster", nil
				s.dockerCheck = func() bool { panic("a store without containers asked for Docker") }
			}

			rec := &recordingTB{}
			s.resolve(rec)

			if tt.wantFatal != "" {
				assert.Contains(t, rec.fatal, tt.wantFatal)
			} else {
				assert.Empty(t, rec.fatal)
			}
			if tt.wantSkip != "" {
				assert.Contains(t, rec.skip, tt.wantSkip)
			} else {
				assert.Empty(t, rec.skip)
			}
		})
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		base, want string
	}{
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://postgres@127.0.0.1:5432/db1?sslmode=disable"},
		{"postgresql://u:p@h/", "postgresql://u:p@h/db1"},
		{"host=127.0.0.1 user=postgres dbname=test", "host=127.0.0.1 user=postgres dbname=test dbname=db1"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.base, "db1")
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}
}
