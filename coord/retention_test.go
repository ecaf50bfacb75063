package coord

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func sortedStrings(t *testing.T, f *fixture, sql string, args ...any) []string {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), sql, args...)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

func tombstones(t *testing.T, f *fixture) []string {
	t.Helper()
	cur, err := f.convs.Database().Collection(mongoBarrierCollection).Find(context.Background(), bson.D{})
	require.NoError(t, err)
	var docs []struct {
		ID string `bson:"_id"`
	}
	require.NoError(t, cur.All(context.Background(), &docs))
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	sort.Strings(out)
	return out
}

// TestPurge_RemovesExactlyTheFinishedSagasAndTheirBarriersWhileSagasRun
// ages sagas in every status, then purges in batches of 2 while other
// sagas run: exactly the old succeeded, compensated and resolved ones go,
// with their history, PostgreSQL barrier rows and MongoDB tombstones.
func TestPurge_RemovesExactlyTheFinishedSagasAndTheirBarriersWhileSagasRun(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, h := f.coordinator(t, Options{Retention: Retention{Batch: 2, MongoBarriers: []*mongo.Database{f.convs.Database()}}})
	run := func(id string) error {
		_, err := h.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
		return err
	}
	require.NoError(t, run("ok1"))
	require.NoError(t, run("ok2"))
	f.fail(stepWelcome, false, -1)
	require.ErrorIs(t, run("comp1"), ErrCompensated) // MongoDelete leaves comp1's tombstone
	require.ErrorIs(t, run("comp2"), ErrCompensated)
	f.fail(stepWelcome, false, 0)
	failedSaga(t, f, h, "failed1")
	failedSaga(t, f, h, "resolved1")
	_, err := c.Resolve(ctx, "resolved1", "bob", "by hand")
	require.NoError(t, err)
	f.fail(stepCache, false, -1)
	require.ErrorIs(t, run("running1"), ErrIncomplete) // its retriable step keeps failing
	f.fail(stepCache, false, 0)

	// Barrier rows as PgBarrier leaves them, for every saga's first step,
	// and one that belongs to no saga.
	for _, id := range []string{"ok1", "ok2", "comp1", "comp2", "failed1", "resolved1", "running1", "other"} {
		_, err := f.pool.Exec(ctx, `insert into coord_barrier (step_key, op) values ($1, 'action')`, id+"/"+stepCreateUser)
		require.NoError(t, err)
	}
	_, err = f.convs.Database().Collection(mongoBarrierCollection).InsertOne(ctx, bson.D{{Key: "_id", Value: "other/x:compensate"}})
	require.NoError(t, err)
	require.Equal(t, []string{"comp1/welcome-conversation:compensate", "comp2/welcome-conversation:compensate", "other/x:compensate"}, tombstones(t, f))
	_, err = f.pool.Exec(ctx, `update coord_saga set updated_at = now() - interval '2 hours'`)
	require.NoError(t, err)

	// Sagas that run meanwhile: new, so kept, and never blocked.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- run(fmt.Sprintf("new%d", i))
		}()
	}
	n, err := c.Purge(ctx, time.Hour)
	wg.Wait()
	close(errs)
	require.NoError(t, err)
	for err := range errs {
		assert.NoError(t, err)
	}

	assert.Equal(t, 5, n)
	assert.Equal(t, []string{"failed1", "new0", "new1", "new2", "new3", "new4", "new5", "new6", "new7", "running1"},
		sortedStrings(t, f, `select id from coord_saga`))
	assert.Equal(t, []string{"failed1", "new0", "new1", "new2", "new3", "new4", "new5", "new6", "new7", "running1"},
		sortedStrings(t, f, `select distinct saga_id from coord_history`))
	assert.Equal(t, []string{"failed1/create-user", "other/create-user", "running1/create-user"},
		sortedStrings(t, f, `select step_key from coord_barrier`))
	assert.Equal(t, []string{"other/x:compensate"}, tombstones(t, f))

	n, err = c.Purge(ctx, time.Hour)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left to purge")
	_, err = c.Purge(ctx, 0)
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestStart_PurgesWithRetentionAfter(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{RecoverEvery: 20 * time.Millisecond, Retention: Retention{After: time.Millisecond}})
	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	require.Eventually(t, func() bool {
		_, err := c.Get(context.Background(), "u1")
		return err != nil
	}, 10*time.Second, 10*time.Millisecond)
	_, err = c.Get(context.Background(), "u1")
	assert.ErrorIs(t, err, ErrNotFound)
}
