package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// effectCounts counts, per step and saga, the effects the barriers report
// as taken (MongoInsert, MongoDelete and RedisSet returning true): each
// must be 1 however often recovery replays the step.
type effectCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *effectCounts) took(ok bool, err error, what, id string) error {
	if err != nil || !ok {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n[what+" "+id]++
	return nil
}

func (e *effectCounts) get(what, id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[what+" "+id]
}

// restartStores are the stores of the restart test: the coordinator's log
// and the steps' PostgreSQL table on the private cluster, MongoDB and Redis
// on the shared servers under names of the test's own.
type restartStores struct {
	convs   *mongo.Collection
	rdb     *redis.Client
	prefix  string
	effects *effectCounts
}

// forward is the three writes of the benchmark through the barriers: a
// TxAction (whose record commits with its insert), a MongoDB insert as the
// pivot, a Redis set as a retriable step.
func (r *restartStores) forward() *Definition[benchState] {
	return Define("restart-forward",
		Step[benchState]{
			Name: "pg",
			TxAction: func(ctx context.Context, tx Tx, s *benchState) error {
				_, err := tx.Exec(ctx, `insert into effects (saga, kind) values ($1, 'action')`, s.ID)
				return err
			},
			TxCompensate: func(ctx context.Context, tx Tx, s *benchState) error {
				_, err := tx.Exec(ctx, `insert into effects (saga, kind) values ($1, 'compensation')`, s.ID)
				return err
			},
		},
		Step[benchState]{
			Name: "mongo",
			Kind: Pivot,
			Action: func(ctx context.Context, s *benchState) error {
				ok, err := MongoInsert(ctx, r.convs, bson.D{{Key: "_id", Value: s.ID}})
				return r.effects.took(ok, err, "mongo insert", s.ID)
			},
		},
		Step[benchState]{
			Name: "redis",
			Kind: Retriable,
			Action: func(ctx context.Context, s *benchState) error {
				ok, err := RedisSet(ctx, r.rdb, r.prefix+s.ID, s.Email, 0)
				return r.effects.took(ok, err, "redis set", s.ID)
			},
		},
	)
}

// undone is a saga whose pivot fails: a MongoDB insert (compensated by
// MongoDelete) followed by a TxAction, both compensated.
func (r *restartStores) undone() *Definition[benchState] {
	return Define("restart-undone",
		Step[benchState]{
			Name: "mongo",
			Action: func(ctx context.Context, s *benchState) error {
				ok, err := MongoInsert(ctx, r.convs, bson.D{{Key: "_id", Value: s.ID}})
				return r.effects.took(ok, err, "mongo insert", s.ID)
			},
			Compensate: func(ctx context.Context, s *benchState) error {
				ok, err := MongoDelete(ctx, r.convs, s.ID)
				return r.effects.took(ok, err, "mongo delete", s.ID)
			},
		},
		Step[benchState]{
			Name: "pg",
			TxAction: func(ctx context.Context, tx Tx, s *benchState) error {
				_, err := tx.Exec(ctx, `insert into effects (saga, kind) values ($1, 'action')`, s.ID)
				return err
			},
			TxCompensate: func(ctx context.Context, tx Tx, s *benchState) error {
				_, err := tx.Exec(ctx, `insert into effects (saga, kind) values ($1, 'compensation')`, s.ID)
				return err
			},
		},
		Step[benchState]{
			Name:   "refuse",
			Kind:   Pivot,
			Retry:  RetryPolicy{Attempts: 1},
			Action: func(context.Context, *benchState) error { return errors.New("refused") },
		},
	)
}

// TestRestart_ImmediatePostgresRestartEndsEverySagaConsistentAfterRecovery
// runs sagas on a private PostgreSQL cluster whose WAL writer flushes only
// every 10s, so that records committed without waiting for the flush stay
// in its buffers; crashes the cluster (immediate restart) right after the
// last Run returned; then recovers on a fresh coordinator. The crash loses
// the records written without waiting for the WAL flush (the last saga's
// final record at least, which Run reported as succeeded); every saga must
// still end as its definition says, with each store's effect taken exactly
// once and nothing left running.
func TestRestart_ImmediatePostgresRestartEndsEverySagaConsistentAfterRecovery(t *testing.T) {
	cluster := servicetest.NewPGCluster(t, servicetest.PGClusterOptions{Settings: map[string]string{
		"wal_writer_delay":   "10s", // its longest
		"checkpoint_timeout": "1h",  // a checkpoint would flush the WAL
		"autovacuum":         "off",
	}})
	ctx := context.Background()
	dbURL, err := cluster.CreateDatabase(ctx, "coord")
	require.NoError(t, err)
	openPool := func() *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(dbURL)
		require.NoError(t, err)
		cfg.MaxConns = 2 * sagasInFlight
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		return pool
	}

	stores := &restartStores{convs: servicetest.Mongo(t).Collection("conversations"), effects: &effectCounts{n: map[string]int{}}}
	stores.rdb, stores.prefix = servicetest.Redis(t)
	pool := openPool()
	_, err = pool.Exec(ctx, `create table effects (saga text not null, kind text not null)`)
	require.NoError(t, err)
	// A short lease, so that recovery may take over the sagas the crash
	// left unfinished soon after the restart.
	opts := Options{LeaseDuration: time.Second, RecoverEvery: time.Hour}
	c, err := New(ctx, pool, opts)
	require.NoError(t, err)
	fwd, err := Register(c, stores.forward())
	require.NoError(t, err)
	und, err := Register(c, stores.undone())
	require.NoError(t, err)

	// 48 sagas forward and 16 compensated, 16 in flight; then one more
	// forward saga on its own, so that the last commits before the crash
	// are its records.
	type saga struct {
		id      string
		forward bool
		runErr  error
	}
	var sagas []*saga
	for i := range 64 {
		sagas = append(sagas, &saga{id: fmt.Sprintf("s%02d", i), forward: i%4 != 3})
	}
	run := func(s *saga) {
		state := &benchState{ID: s.id, Email: s.id + "@example.com"}
		if s.forward {
			_, s.runErr = fwd.Run(ctx, s.id, state)
		} else {
			_, s.runErr = und.Run(ctx, s.id, state)
		}
	}
	work := make(chan *saga)
	var wg sync.WaitGroup
	for range sagasInFlight {
		wg.Go(func() {
			for s := range work {
				run(s)
			}
		})
	}
	for _, s := range sagas {
		work <- s
	}
	close(work)
	wg.Wait()
	last := &saga{id: "last", forward: true}
	run(last)
	sagas = append(sagas, last)
	for _, s := range sagas {
		if s.forward {
			require.True(t, s.runErr == nil || errors.Is(s.runErr, ErrIncomplete), "%s: %v", s.id, s.runErr)
		} else {
			require.True(t, errors.Is(s.runErr, ErrCompensated) || errors.Is(s.runErr, ErrIncomplete), "%s: %v", s.id, s.runErr)
		}
	}

	// The crash: every server process exits at once, and WAL not yet
	// written is lost.
	pool.Close()
	require.NoError(t, cluster.Restart(servicetest.Immediate))

	pool = openPool()
	t.Cleanup(pool.Close)
	status := func() map[string]Status {
		rows, err := pool.Query(ctx, `select id, status from coord_saga`)
		require.NoError(t, err)
		byID := map[string]Status{}
		var id string
		var st Status
		_, err = pgx.ForEachRow(rows, []any{&id, &st}, func() error {
			byID[id] = st
			return nil
		})
		require.NoError(t, err)
		return byID
	}
	afterCrash := status()
	var lost []string
	for _, s := range sagas {
		_, logged := afterCrash[s.id]
		require.True(t, logged, "%s: the record's insert is durable", s.id)
		finished := StatusSucceeded
		if !s.forward {
			finished = StatusCompensated
		}
		if (s.runErr == nil || errors.Is(s.runErr, ErrCompensated)) && afterCrash[s.id] != finished {
			lost = append(lost, s.id)
		}
	}
	t.Logf("sagas whose Run returned their outcome and that the crash left unfinished (their last records lost): %d %v", len(lost), lost)
	// The crash did lose records: the last saga's final record follows its
	// retriable step, so it is committed without waiting for the WAL flush,
	// and no durable commit came after it to flush it.
	require.NoError(t, last.runErr, "the last saga ran alone and succeeded")
	assert.Equal(t, StatusRunning, afterCrash[last.id], "the last saga's final record was lost by the crash")
	assert.Contains(t, lost, last.id)

	c2, err := New(ctx, pool, opts)
	require.NoError(t, err)
	_, err = Register(c2, stores.forward())
	require.NoError(t, err)
	_, err = Register(c2, stores.undone())
	require.NoError(t, err)
	unfinished := func() int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `select count(*) from coord_saga where status in ('running', 'compensating')`).Scan(&n))
		return n
	}
	// Recover takes only sagas whose lease expired: poll until none is
	// left, within a bound.
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for unfinished() > 0 {
		require.True(t, time.Now().Before(deadline), "recovery did not finish every saga within a minute")
		_, err := c2.Recover(ctx)
		require.NoError(t, err)
		<-tick.C
	}

	final := status()
	rows, err := pool.Query(ctx, `select saga || ' ' || kind from effects`)
	require.NoError(t, err)
	pgEffects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	pgCount := map[string]int{}
	for _, e := range pgEffects {
		pgCount[e]++
	}
	for _, s := range sagas {
		n, err := stores.convs.CountDocuments(ctx, bson.D{{Key: "_id", Value: s.id}})
		require.NoError(t, err)
		if s.forward {
			assert.Equal(t, StatusSucceeded, final[s.id], s.id)
			assert.Equal(t, 1, pgCount[s.id+" action"], "%s: PostgreSQL insert", s.id)
			assert.Zero(t, pgCount[s.id+" compensation"], s.id)
			assert.EqualValues(t, 1, n, "%s: MongoDB document", s.id)
			assert.Equal(t, 1, stores.effects.get("mongo insert", s.id), s.id)
			assert.Equal(t, 1, stores.effects.get("redis set", s.id), s.id)
			assert.Equal(t, s.id+"@example.com", stores.rdb.Get(ctx, stores.prefix+s.id).Val(), s.id)
		} else {
			assert.Equal(t, StatusCompensated, final[s.id], s.id)
			assert.Equal(t, 1, pgCount[s.id+" action"], "%s: PostgreSQL insert", s.id)
			assert.Equal(t, 1, pgCount[s.id+" compensation"], "%s: its compensation", s.id)
			assert.Zero(t, n, "%s: MongoDB document removed", s.id)
			assert.Equal(t, 1, stores.effects.get("mongo insert", s.id), s.id)
			assert.Equal(t, 1, stores.effects.get("mongo delete", s.id), s.id)
		}
	}
}
