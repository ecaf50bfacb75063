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

// restartRig is a private PostgreSQL cluster holding a coordinator's log
// and the steps' table, with the two definitions registered, for tests
// that crash the cluster.
type restartRig struct {
	cluster *servicetest.PGCluster
	dbURL   string
	stores  *restartStores
	opts    Options
	pool    *pgxpool.Pool
	fwd     *Handle[benchState]
	und     *Handle[benchState]
}

// restartSaga is one saga of a restart test and what its Run returned.
type restartSaga struct {
	id      string
	forward bool // restart-forward, else restart-undone
	runErr  error
}

func newRestartRig(t *testing.T) *restartRig {
	t.Helper()
	r := &restartRig{
		cluster: servicetest.NewPGCluster(t, servicetest.PGClusterOptions{Settings: map[string]string{
			"wal_writer_delay":   "10s", // its longest
			"checkpoint_timeout": "1h",  // a checkpoint would flush the WAL
			"autovacuum":         "off",
		}}),
		stores: &restartStores{convs: servicetest.Mongo(t).Collection("conversations"), effects: &effectCounts{n: map[string]int{}}},
		// A short lease, so that recovery may take over the sagas the crash
		// left unfinished soon after the restart.
		opts: Options{LeaseDuration: time.Second, RecoverEvery: time.Hour},
	}
	r.stores.rdb, r.stores.prefix = servicetest.Redis(t)
	ctx := context.Background()
	var err error
	r.dbURL, err = r.cluster.CreateDatabase(ctx, "coord")
	require.NoError(t, err)
	r.pool = r.openPool(t)
	_, err = r.pool.Exec(ctx, `create table effects (saga text not null, kind text not null)`)
	require.NoError(t, err)
	c, err := New(ctx, r.pool, r.opts)
	require.NoError(t, err)
	r.fwd, err = Register(c, r.stores.forward())
	require.NoError(t, err)
	r.und, err = Register(c, r.stores.undone())
	require.NoError(t, err)
	return r
}

func (r *restartRig) openPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(r.dbURL)
	require.NoError(t, err)
	cfg.MaxConns = 2 * sagasInFlight
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// sagas returns n sagas named prefix and a number, one in four of them
// restart-undone.
func (r *restartRig) sagas(prefix string, n int) []*restartSaga {
	var sagas []*restartSaga
	for i := range n {
		sagas = append(sagas, &restartSaga{id: fmt.Sprintf("%s%02d", prefix, i), forward: i%4 != 3})
	}
	return sagas
}

func (r *restartRig) run(s *restartSaga) {
	ctx := context.Background()
	state := &benchState{ID: s.id, Email: s.id + "@example.com"}
	if s.forward {
		_, s.runErr = r.fwd.Run(ctx, s.id, state)
	} else {
		_, s.runErr = r.und.Run(ctx, s.id, state)
	}
}

// runAll runs sagas, sagasInFlight at a time, calling done after each Run.
func (r *restartRig) runAll(sagas []*restartSaga, done func()) {
	work := make(chan *restartSaga)
	var wg sync.WaitGroup
	for range sagasInFlight {
		wg.Go(func() {
			for s := range work {
				r.run(s)
				done()
			}
		})
	}
	for _, s := range sagas {
		work <- s
	}
	close(work)
	wg.Wait()
}

// statuses returns the status of every saga in the log, by id.
func (r *restartRig) statuses(t *testing.T) map[string]Status {
	t.Helper()
	rows, err := r.pool.Query(context.Background(), `select id, status from coord_saga`)
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

// recoverAll has a fresh coordinator on the restarted cluster recover
// until no saga is left running or compensating.
func (r *restartRig) recoverAll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	c, err := New(ctx, r.pool, r.opts)
	require.NoError(t, err)
	_, err = Register(c, r.stores.forward())
	require.NoError(t, err)
	_, err = Register(c, r.stores.undone())
	require.NoError(t, err)
	unfinished := func() int {
		var n int
		require.NoError(t, r.pool.QueryRow(ctx, `select count(*) from coord_saga where status in ('running', 'compensating')`).Scan(&n))
		return n
	}
	// Recover takes only sagas whose lease expired: poll until none is
	// left, within a bound.
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for unfinished() > 0 {
		require.True(t, time.Now().Before(deadline), "recovery did not finish every saga within a minute")
		_, err := c.Recover(ctx)
		require.NoError(t, err)
		<-tick.C
	}
	// A compensation whose tries all fell while the server was down leaves
	// its saga failed, for an operator: the test is that operator.
	page, err := c.List(ctx, Filter{Statuses: []Status{StatusFailed}, Limit: 1000})
	require.NoError(t, err)
	for _, info := range page.Sagas {
		t.Logf("%s failed (%s): Retry", info.ID, info.Error)
		_, err := c.Retry(ctx, info.ID, "restart test", "compensation failed while PostgreSQL was down")
		require.NoError(t, err)
	}
}

// assertConsistent checks every saga against the stores: one that is not
// in the log took no effect; a succeeded one took each effect exactly once;
// a compensated one took back every effect it took, each once.
func (r *restartRig) assertConsistent(t *testing.T, sagas []*restartSaga) {
	t.Helper()
	ctx := context.Background()
	final := r.statuses(t)
	rows, err := r.pool.Query(ctx, `select saga || ' ' || kind from effects`)
	require.NoError(t, err)
	pgEffects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	pg := map[string]int{}
	for _, e := range pgEffects {
		pg[e]++
	}
	eff := r.stores.effects
	for _, s := range sagas {
		docs, err := r.stores.convs.CountDocuments(ctx, bson.D{{Key: "_id", Value: s.id}})
		require.NoError(t, err)
		key, err := r.stores.rdb.Exists(ctx, r.stores.prefix+s.id).Result()
		require.NoError(t, err)
		st, logged := final[s.id]
		switch {
		case !logged:
			assert.True(t, errors.Is(s.runErr, ErrNotStarted) || errors.Is(s.runErr, ErrOutcomeUnknown), "%s: not in the log, Run returned %v", s.id, s.runErr)
			assert.Zero(t, int64(pg[s.id+" action"]+eff.get("mongo insert", s.id)+eff.get("redis set", s.id))+docs+key, "%s: not in the log: no effect", s.id)
		case st == StatusSucceeded:
			assert.True(t, s.forward, "%s: only restart-forward succeeds", s.id)
			assert.Equal(t, 1, pg[s.id+" action"], "%s: PostgreSQL insert", s.id)
			assert.Zero(t, pg[s.id+" compensation"], s.id)
			assert.EqualValues(t, 1, docs, "%s: MongoDB document", s.id)
			assert.Equal(t, 1, eff.get("mongo insert", s.id), s.id)
			assert.Equal(t, 1, eff.get("redis set", s.id), s.id)
			assert.Equal(t, s.id+"@example.com", r.stores.rdb.Get(ctx, r.stores.prefix+s.id).Val(), s.id)
		case st == StatusCompensated:
			assert.LessOrEqual(t, pg[s.id+" action"], 1, "%s: PostgreSQL insert", s.id)
			assert.Equal(t, pg[s.id+" action"], pg[s.id+" compensation"], "%s: its compensation, once", s.id)
			assert.Zero(t, docs, "%s: MongoDB document", s.id)
			assert.Zero(t, key, "%s: Redis key", s.id)
			assert.LessOrEqual(t, eff.get("mongo insert", s.id), 1, s.id)
			assert.Equal(t, eff.get("mongo insert", s.id), eff.get("mongo delete", s.id), "%s: MongoDB delete, once", s.id)
			if !s.forward {
				assert.Equal(t, 1, pg[s.id+" action"], "%s: its TxAction ran before the pivot failed", s.id)
			}
		default:
			assert.Failf(t, "saga not finished", "%s: %s", s.id, st)
		}
	}
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
	r := newRestartRig(t)

	// 48 sagas forward and 16 compensated, 16 in flight; then one more
	// forward saga on its own, so that the last commits before the crash
	// are its records.
	sagas := r.sagas("s", 64)
	r.runAll(sagas, func() {})
	last := &restartSaga{id: "last", forward: true}
	r.run(last)
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
	r.pool.Close()
	require.NoError(t, r.cluster.Restart(servicetest.Immediate))
	r.pool = r.openPool(t)

	afterCrash := r.statuses(t)
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

	r.recoverAll(t)
	r.assertConsistent(t, sagas)
	final := r.statuses(t)
	for _, s := range sagas {
		want := StatusSucceeded
		if !s.forward {
			want = StatusCompensated
		}
		assert.Equal(t, want, final[s.id], s.id)
	}
}

// TestRestart_CrashWhileSagasRunEndsEverySagaConsistent crashes the cluster
// while 16 sagas are in flight, after the first 16 of 96 have returned,
// and lets the runs go on against the restarted server: Runs cut by the
// crash return ErrIncomplete, ErrNotStarted or ErrOutcomeUnknown, or end
// by compensation when a step's tries all failed while the server was
// down. After recovery each saga must be consistent: not in the log and no
// effect, or finished with each effect taken (and taken back) exactly once.
func TestRestart_CrashWhileSagasRunEndsEverySagaConsistent(t *testing.T) {
	r := newRestartRig(t)
	sagas := r.sagas("m", 96)
	var returned sync.WaitGroup
	returned.Add(16)
	var count sync.Mutex
	n := 0
	crashed := make(chan error, 1)
	go func() {
		returned.Wait()
		crashed <- r.cluster.Restart(servicetest.Immediate)
	}()
	r.runAll(sagas, func() {
		count.Lock()
		defer count.Unlock()
		if n++; n <= 16 {
			returned.Done()
		}
	})
	require.NoError(t, <-crashed)
	outcomes := map[string]int{}
	for _, s := range sagas {
		switch {
		case s.runErr == nil:
			outcomes["nil"]++
		case errors.Is(s.runErr, ErrCompensated):
			outcomes["ErrCompensated"]++
		case errors.Is(s.runErr, ErrIncomplete):
			outcomes["ErrIncomplete"]++
		case errors.Is(s.runErr, ErrNotStarted):
			outcomes["ErrNotStarted"]++
		case errors.Is(s.runErr, ErrOutcomeUnknown):
			outcomes["ErrOutcomeUnknown"]++
		default:
			assert.Failf(t, "unexpected Run error", "%s: %v", s.id, s.runErr)
		}
	}
	t.Logf("Run outcomes around the crash: %v", outcomes)

	r.recoverAll(t)
	r.assertConsistent(t, sagas)
}
