package coord

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// roundTrips counts the round trips pgx makes: one per query, one per batch.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// newThreeWrites returns the stores of the three writes, on a fresh
// database whose PostgreSQL round trips rt counts, and their saga registered
// with a coordinator there.
func newThreeWrites(tb testing.TB, rt *roundTrips) (threeWrites, *Handle[benchState]) {
	tb.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(servicetest.PostgresURL(tb))
	require.NoError(tb, err)
	cfg.ConnConfig.Tracer = rt
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `create table users (id text primary key, email text not null)`)
	require.NoError(tb, err)

	w := threeWrites{pool: pool, convs: servicetest.Mongo(tb).Collection("conversations")}
	w.rdb, w.prefix = servicetest.Redis(tb)
	c, err := New(ctx, pool, Options{})
	require.NoError(tb, err)
	h, err := Register(c, w.saga())
	require.NoError(tb, err)
	return w, h
}

type benchState struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// threeWrites is the benchmark's work: a PostgreSQL insert, a MongoDB insert
// and a Redis set.
type threeWrites struct {
	pool   *pgxpool.Pool
	convs  *mongo.Collection
	rdb    *redis.Client
	prefix string
}

// raw does the three writes directly with the drivers.
func (w threeWrites) raw(ctx context.Context, s *benchState) error {
	if _, err := w.pool.Exec(ctx, `insert into users (id, email) values ($1, $2)`, s.ID, s.Email); err != nil {
		return err
	}
	if _, err := w.convs.InsertOne(ctx, bson.D{{Key: "_id", Value: s.ID}, {Key: "title", Value: "Welcome"}}); err != nil {
		return err
	}
	return w.rdb.Set(ctx, w.prefix+s.ID, s.Email, 0).Err()
}

// saga does the same three writes as a saga, the MongoDB insert and the
// Redis set through the barrier helpers that make their replay take effect
// once (what a saga's Action steps need), the PostgreSQL insert in the
// step's transaction (which needs no barrier).
func (w threeWrites) saga() *Definition[benchState] {
	return Define("three-writes",
		Step[benchState]{
			Name: "pg",
			TxAction: func(ctx context.Context, tx Tx, s *benchState) error {
				_, err := tx.Exec(ctx, `insert into users (id, email) values ($1, $2)`, s.ID, s.Email)
				return err
			},
			TxCompensate: func(ctx context.Context, tx Tx, s *benchState) error {
				_, err := tx.Exec(ctx, `delete from users where id = $1`, s.ID)
				return err
			},
		},
		Step[benchState]{
			Name: "mongo",
			Kind: Pivot,
			Action: func(ctx context.Context, s *benchState) error {
				_, err := MongoInsert(ctx, w.convs, bson.D{{Key: "_id", Value: s.ID}, {Key: "title", Value: "Welcome"}})
				return err
			},
		},
		Step[benchState]{
			Name: "redis",
			Kind: Retriable,
			Action: func(ctx context.Context, s *benchState) error {
				_, err := RedisSet(ctx, w.rdb, w.prefix+s.ID, s.Email, 0)
				return err
			},
		},
	)
}

// grouped does the same three writes as a saga whose MongoDB insert and
// Redis set run concurrently, as one parallel group after the PostgreSQL
// insert. A pivot cannot be inside a group (README.md, Parallel groups),
// so where saga has the MongoDB insert as its pivot, here the PostgreSQL
// insert is the pivot (its commit is the saga's point of no return) and
// both group members are retriable: the shape a saga takes when the writes
// after its first one must only happen, not be undone. The group's record
// is then a retriable step's, written without waiting for the WAL flush
// (Definition.recordDurable). With atCommit, the pivot's insert is queued
// with ExecAtCommit, as a step that needs no result of its writes does,
// and travels with BEGIN, the record and COMMIT; without, the step runs it
// with tx.Exec, a round trip of its own.
func (w threeWrites) grouped(atCommit bool) *Definition[benchState] {
	name := "three-writes-grouped-exec"
	insert := func(ctx context.Context, tx Tx, s *benchState) error {
		_, err := tx.Exec(ctx, `insert into users (id, email) values ($1, $2)`, s.ID, s.Email)
		return err
	}
	if atCommit {
		name = "three-writes-grouped"
		insert = func(ctx context.Context, tx Tx, s *benchState) error {
			return ExecAtCommit(ctx, tx, `insert into users (id, email) values ($1, $2)`, s.ID, s.Email)
		}
	}
	return Define(name,
		Step[benchState]{
			Name:     "pg",
			Kind:     Pivot,
			TxAction: insert,
		},
		Parallel("notify",
			Step[benchState]{
				Name: "mongo",
				Kind: Retriable,
				Action: func(ctx context.Context, s *benchState) error {
					_, err := MongoInsert(ctx, w.convs, bson.D{{Key: "_id", Value: s.ID}, {Key: "title", Value: "Welcome"}})
					return err
				},
			},
			Step[benchState]{
				Name: "redis",
				Kind: Retriable,
				Action: func(ctx context.Context, s *benchState) error {
					_, err := RedisSet(ctx, w.rdb, w.prefix+s.ID, s.Email, 0)
					return err
				},
			},
		),
	)
}

// TestRun_HappyPathCostsOneRoundTripPerStepTheRecordRidingInAFirstTxAction
// counts the PostgreSQL round trips of a saga against the raw writes: one
// per step (a TxAction's BEGIN and opening statement travel with its first
// statement, its record with COMMIT; an Action's record is one write; a
// parallel group is one step, its members sharing one record), and
// the record's insert: in the first step's transaction when that step is a
// TxAction (no round trip of its own), one round trip before any step's
// code otherwise. The last record of these sagas, whose last step is
// retriable, is written after Run returns: counted too.
func TestRun_HappyPathCostsOneRoundTripPerStepTheRecordRidingInAFirstTxAction(t *testing.T) {
	var rt roundTrips
	w, h := newThreeWrites(t, &rt)
	ctx := context.Background()

	rt.n.Store(0)
	require.NoError(t, w.raw(ctx, &benchState{ID: "raw", Email: "raw@example.com"}))
	assert.EqualValues(t, 1, rt.n.Load(), "raw: one insert")

	actionFirst, err := Register(h.c, Define("three-writes-action-first", h.def.steps[1:]...))
	require.NoError(t, err)
	grouped, err := Register(h.c, w.grouped(true))
	require.NoError(t, err)
	groupedExec, err := Register(h.c, w.grouped(false))
	require.NoError(t, err)
	tests := []struct {
		name string
		run  func(id string) error
		want int64
	}{
		// pg: BEGIN and the step's insert, then the record's insert (at
		// the step's end) and COMMIT; mongo: its record; redis: its record.
		{"first step a TxAction", func(id string) error {
			_, err := h.Run(ctx, id, &benchState{ID: id, Email: id + "@example.com"})
			return err
		}, 4},
		// The record's insert, then mongo's record and redis's.
		{"first step an Action", func(id string) error {
			_, err := actionFirst.Run(ctx, id, &benchState{ID: id, Email: id + "@example.com"})
			return err
		}, 3},
		// pg (the pivot): BEGIN and the step's insert, then the record's
		// insert and COMMIT; the group (mongo and redis
		// concurrently): its one record.
		{"a TxAction then a parallel group", func(id string) error {
			_, err := groupedExec.Run(ctx, id, &benchState{ID: id, Email: id + "@example.com"})
			return err
		}, 3},
		// pg (the pivot): BEGIN, the insert queued with ExecAtCommit, the
		// record's insert and COMMIT; the group: its one record.
		{"a TxAction of ExecAtCommit then a parallel group", func(id string) error {
			_, err := grouped.Run(ctx, id, &benchState{ID: id, Email: id + "@example.com"})
			return err
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt.n.Store(0)
			require.NoError(t, tt.run("saga-"+tt.name))
			// The final record is written after Run returns (finisher).
			h.c.settleFinals(ctx)
			assert.Equal(t, tt.want, rt.n.Load())
		})
	}
}
