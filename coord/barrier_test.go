package coord

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongoevent "go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Each barrier is checked for the four cases of the saga model: a replayed
// action, a replayed compensation, a compensation of an action that never
// ran (null compensation) and an action that arrives after its compensation
// (hanging).

func TestPgBarrier_AppliesEachOperationAtMostOnce(t *testing.T) {
	pool := servicetest.Postgres(t)
	ctx := context.Background()
	require.NoError(t, Migrate(ctx, pool))

	barrier := func(key, op string, commit bool) bool {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		ok, err := PgBarrier(withStep(ctx, key, op), tx)
		require.NoError(t, err)
		if commit {
			require.NoError(t, tx.Commit(ctx))
		}
		return ok
	}

	assert.True(t, barrier("s1/a", opAction, false), "rolled back: does not count")
	assert.True(t, barrier("s1/a", opAction, true), "first action")
	assert.False(t, barrier("s1/a", opAction, true), "replayed action")
	assert.True(t, barrier("s1/a", opCompensate, true), "compensation of an action that ran")
	assert.False(t, barrier("s1/a", opCompensate, true), "replayed compensation")

	assert.False(t, barrier("s2/a", opCompensate, true), "null compensation")
	assert.False(t, barrier("s2/a", opAction, true), "hanging action")

	_, err := PgBarrier(ctx, nil)
	assert.ErrorIs(t, err, ErrInvalid, "outside a step")
}

func TestRedisBarrier_AppliesEachOperationAtMostOnce(t *testing.T) {
	rdb, prefix := servicetest.Redis(t)
	ctx := context.Background()
	key := prefix + "k"
	step := withStep(ctx, "s1/a", opAction)
	comp := withStep(ctx, "s1/a", opCompensate)

	ok, err := RedisSet(step, rdb, key, "v1", time.Hour)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = RedisSet(step, rdb, key, "v2", time.Hour)
	require.NoError(t, err)
	assert.False(t, ok, "replayed action")
	assert.Equal(t, "v1", rdb.Get(ctx, key).Val())
	assert.Greater(t, rdb.PTTL(ctx, key).Val(), time.Duration(0), "ttl applied")

	ok, err = RedisDel(comp, rdb, key)
	require.NoError(t, err)
	assert.True(t, ok)
	require.NoError(t, rdb.Set(ctx, key, "written later by someone else", 0).Err())
	ok, err = RedisDel(comp, rdb, key)
	require.NoError(t, err)
	assert.False(t, ok, "replayed compensation")
	assert.Equal(t, "written later by someone else", rdb.Get(ctx, key).Val())

	key2 := prefix + "k2"
	ok, err = RedisDel(withStep(ctx, "s2/a", opCompensate), rdb, key2)
	require.NoError(t, err)
	assert.False(t, ok, "null compensation")
	ok, err = RedisSet(withStep(ctx, "s2/a", opAction), rdb, key2, "v", 0)
	require.NoError(t, err)
	assert.False(t, ok, "hanging action")
	assert.Zero(t, rdb.Exists(ctx, key2).Val())

	_, err = RedisSet(ctx, rdb, key, "v", 0)
	assert.ErrorIs(t, err, ErrInvalid, "outside a step")
	_, err = RedisDel(ctx, rdb, key)
	assert.ErrorIs(t, err, ErrInvalid, "outside a step")
}

func TestMongoBarrier_AppliesEachOperationAtMostOnce(t *testing.T) {
	coll := servicetest.Mongo(t).Collection("docs")
	ctx := context.Background()
	step := withStep(ctx, "s1/a", opAction)
	comp := withStep(ctx, "s1/a", opCompensate)
	count := func(id string) int64 {
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
		require.NoError(t, err)
		return n
	}

	ok, err := MongoInsert(step, coll, bson.D{{Key: "_id", Value: "d1"}})
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = MongoInsert(step, coll, bson.D{{Key: "_id", Value: "d1"}})
	require.NoError(t, err)
	assert.False(t, ok, "replayed action")
	assert.EqualValues(t, 1, count("d1"))

	ok, err = MongoDelete(comp, coll, "d1")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = MongoDelete(comp, coll, "d1")
	require.NoError(t, err)
	assert.False(t, ok, "replayed compensation")
	ok, err = MongoInsert(step, coll, bson.D{{Key: "_id", Value: "d1"}})
	require.NoError(t, err)
	assert.False(t, ok, "action replayed after its compensation")
	assert.Zero(t, count("d1"))

	ok, err = MongoDelete(withStep(ctx, "s2/a", opCompensate), coll, "d2")
	require.NoError(t, err)
	assert.False(t, ok, "null compensation")
	ok, err = MongoInsert(withStep(ctx, "s2/a", opAction), coll, bson.D{{Key: "_id", Value: "d2"}})
	require.NoError(t, err)
	assert.False(t, ok, "hanging action")
	assert.Zero(t, count("d2"))

	_, err = MongoInsert(ctx, coll, bson.D{{Key: "_id", Value: "d3"}})
	assert.ErrorIs(t, err, ErrInvalid, "outside a step")
	_, err = MongoDelete(ctx, coll, "d3")
	assert.ErrorIs(t, err, ErrInvalid, "outside a step")
}

// mongoCommands records the commands a MongoDB client sends, one per round
// trip, as "<command> <collection>".
type mongoCommands struct {
	mu    sync.Mutex
	names []string
}

func (m *mongoCommands) started(_ context.Context, e *mongoevent.CommandStartedEvent) {
	// A command's first element is its name with its collection as value.
	coll, _ := e.Command.Index(0).Value().StringValueOK()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.names = append(m.names, e.CommandName+" "+coll)
}

// take returns the commands sent since the last call, and forgets them.
func (m *mongoCommands) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := m.names
	m.names = nil
	return names
}

// countedMongo returns a database of the test's own on a client whose
// commands cmds records.
func countedMongo(t *testing.T) (*mongo.Database, *mongoCommands) {
	t.Helper()
	name := servicetest.Mongo(t).Name() // dropped when the test ends
	cmds := &mongoCommands{}
	client, err := mongo.Connect(options.Client().ApplyURI(servicetest.MongoURL(t)).
		SetMonitor(&mongoevent.CommandMonitor{Started: cmds.started}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database(name), cmds
}

func TestMongoInsert_TakesOneRoundTripWhenTheLogExcludesTheCompensation(t *testing.T) {
	db, cmds := countedMongo(t)
	coll := db.Collection("docs")
	ctx := context.Background()

	tests := []struct {
		name string
		step func(key string) context.Context
		want []string // the commands of a first insert, and of its replay
	}{
		{"no run information (a direct call)", func(key string) context.Context {
			return withStep(ctx, key, opAction)
		}, []string{"find coord_barrier", "insert docs"}},
		{"step without compensation", func(key string) context.Context {
			return withRunStep(ctx, key, "", opAction, false)
		}, []string{"insert docs"}},
		{"step with a compensation", func(key string) context.Context {
			return withRunStep(ctx, key, "", opAction, true)
		}, []string{"find coord_barrier", "insert docs"}},
		{"in a compensation", func(key string) context.Context {
			return withRunStep(ctx, key, "", opCompensate, false)
		}, []string{"find coord_barrier", "insert docs"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := string(rune('a' + i))
			step := tt.step("s/" + id)
			cmds.take()
			ok, err := MongoInsert(step, coll, bson.D{{Key: "_id", Value: id}})
			require.NoError(t, err)
			assert.True(t, ok)
			assert.Equal(t, tt.want, cmds.take(), "first insert")
			ok, err = MongoInsert(step, coll, bson.D{{Key: "_id", Value: id}})
			require.NoError(t, err)
			assert.False(t, ok, "replay")
			assert.Equal(t, tt.want, cmds.take(), "replay")
			n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
			require.NoError(t, err)
			assert.EqualValues(t, 1, n)
		})
	}

	// In a step with a compensation the tombstone is honoured: a late
	// action after its compensation does nothing.
	t.Run("tombstone honoured in a step with a compensation", func(t *testing.T) {
		cmds.take()
		ok, err := MongoDelete(withStep(ctx, "s/late", opCompensate), coll, "late")
		require.NoError(t, err)
		assert.False(t, ok, "null compensation")
		assert.Equal(t, []string{"insert coord_barrier", "delete docs"}, cmds.take(), "MongoDelete: its tombstone, then the delete")
		ok, err = MongoInsert(withRunStep(ctx, "s", "late", opAction, true), coll, bson.D{{Key: "_id", Value: "late"}})
		require.NoError(t, err)
		assert.False(t, ok, "hanging action")
		assert.Equal(t, []string{"find coord_barrier"}, cmds.take())
	})
}

// TestMongoInsert_InASagaChecksTheTombstoneOnlyInACompensatableStep runs a
// saga with a MongoInsert in a compensatable step, in its pivot and in a
// retriable step, and counts the MongoDB commands: the coordinator tells
// the barriers which steps have no compensation, whose insert then goes
// alone.
func TestMongoInsert_InASagaChecksTheTombstoneOnlyInACompensatableStep(t *testing.T) {
	db, cmds := countedMongo(t)
	ctx := context.Background()
	c, err := New(ctx, servicetest.Postgres(t), Options{})
	require.NoError(t, err)
	type S struct{ ID string }
	insert := func(coll string) func(context.Context, *S) error {
		return func(ctx context.Context, s *S) error {
			_, err := MongoInsert(ctx, db.Collection(coll), bson.D{{Key: "_id", Value: s.ID}})
			return err
		}
	}
	h, err := Register(c, Define("mongo-steps",
		Step[S]{Name: "conversation", Action: insert("compensatable"), Compensate: func(ctx context.Context, s *S) error {
			_, err := MongoDelete(ctx, db.Collection("compensatable"), s.ID)
			return err
		}},
		Step[S]{Name: "activate", Kind: Pivot, Action: insert("pivot")},
		Step[S]{Name: "announce", Kind: Retriable, Action: insert("retriable")},
	))
	require.NoError(t, err)

	cmds.take()
	_, err = h.Run(ctx, "saga", &S{ID: "d1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"find coord_barrier", "insert compensatable", "insert pivot", "insert retriable"}, cmds.take())
}

// TestTx_FirstStatementOfEveryKindCommitsWithTheLog runs TxActions whose
// first statement, the one that carries BEGIN (and, past the saga's first
// step, the log's lease check), is each of the Tx methods, or none at all.
func TestTx_FirstStatementOfEveryKindCommitsWithTheLog(t *testing.T) {
	pool := servicetest.Postgres(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `create table t (id text primary key, n int not null)`)
	require.NoError(t, err)
	c, err := New(ctx, pool, Options{})
	require.NoError(t, err)

	type S struct{ N int }
	insert := func(ctx context.Context, tx Tx, id string) error {
		_, err := tx.Exec(ctx, `insert into t values ($1, 1)`, id)
		return err
	}
	firsts := map[string]func(ctx context.Context, tx Tx, s *S) error{
		"exec": func(ctx context.Context, tx Tx, s *S) error {
			return insert(ctx, tx, StepKey(ctx))
		},
		"query": func(ctx context.Context, tx Tx, s *S) error {
			rows, err := tx.Query(ctx, `select generate_series(1, 3)`)
			if err != nil {
				return err
			}
			ns, err := pgx.CollectRows(rows, pgx.RowTo[int])
			s.N = len(ns)
			if err != nil {
				return err
			}
			return insert(ctx, tx, StepKey(ctx))
		},
		"query row": func(ctx context.Context, tx Tx, s *S) error {
			if err := tx.QueryRow(ctx, `select 3`).Scan(&s.N); err != nil {
				return err
			}
			return insert(ctx, tx, StepKey(ctx))
		},
		"barrier then batch": func(ctx context.Context, tx Tx, s *S) error {
			ok, err := PgBarrier(ctx, tx)
			if err != nil || !ok {
				return err
			}
			b := &pgx.Batch{}
			b.Queue(`insert into t values ($1, 1)`, StepKey(ctx))
			return tx.SendBatch(ctx, b).Close()
		},
		"batch": func(ctx context.Context, tx Tx, s *S) error {
			b := &pgx.Batch{}
			b.Queue(`insert into t values ($1, 1)`, StepKey(ctx))
			b.Queue(`select 1`)
			return tx.SendBatch(ctx, b).Close()
		},
		"copy": func(ctx context.Context, tx Tx, s *S) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id", "n"}, pgx.CopyFromRows([][]any{{StepKey(ctx), 1}}))
			return err
		},
		"none": func(ctx context.Context, tx Tx, s *S) error { return nil },
	}
	for name, first := range firsts {
		t.Run(name, func(t *testing.T) {
			h, err := Register(c, Define(name,
				Step[S]{Name: "first", TxAction: first},
				Step[S]{Name: "second", TxAction: first},
			))
			require.NoError(t, err)
			id := "saga-" + name
			var s S
			info, err := h.Run(ctx, id, &s)
			require.NoError(t, err)
			assert.Equal(t, StatusSucceeded, info.Status)
			var n int
			require.NoError(t, pool.QueryRow(ctx, `select count(*) from t where id like $1`, id+"/%").Scan(&n))
			want := 2
			if name == "none" {
				want = 0
			}
			assert.Equal(t, want, n)
			if name == "query" || name == "query row" {
				assert.Equal(t, 3, s.N, "the first statement's rows reach the step")
			}
		})
	}

	// A step's failing statement rolls back its work and its log record.
	h, err := Register(c, Define("failing",
		Step[S]{Name: "first", TxAction: func(ctx context.Context, tx Tx, s *S) error {
			if err := insert(ctx, tx, "failing"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `select 1 / 0`)
			return err
		}, Retry: RetryPolicy{Attempts: 1}},
	))
	require.NoError(t, err)
	_, err = h.Run(ctx, "failing", &S{})
	require.ErrorIs(t, err, ErrCompensated)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `select count(*) from t where id = 'failing'`).Scan(&n))
	assert.Zero(t, n)
}
