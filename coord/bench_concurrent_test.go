package coord

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/require"
)

// sagasInFlight is the concurrency of BenchmarkThreeWritesConcurrent.
const sagasInFlight = 16

// newConcurrentThreeWrites is newThreeWrites with a PostgreSQL pool that
// lets every saga in flight hold a connection (pgxpool's default is 4 on
// this machine), so that neither side of the benchmark queues for one.
// go-redis's default pool (10 per CPU) and the MongoDB driver's (100)
// hold sagasInFlight already.
func newConcurrentThreeWrites(tb testing.TB) (threeWrites, *Handle[benchState], *Handle[benchState], *Handle[benchState], *roundTrips) {
	tb.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(servicetest.PostgresURL(tb))
	require.NoError(tb, err)
	cfg.MaxConns = 2 * sagasInFlight
	rt := &roundTrips{}
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
	hg, err := Register(c, w.grouped(true))
	require.NoError(tb, err)
	hx, err := Register(c, w.grouped(false))
	require.NoError(tb, err)
	return w, h, hg, hx, rt
}

// BenchmarkThreeWritesConcurrent compares the throughput of the three-step
// sagas of BenchmarkThreeWrites (PostgreSQL insert in the step's
// transaction, MongoDB insert, Redis set: one after the other,
// impl=polystore-sequential, or the last two as a parallel group after the
// PostgreSQL insert as the pivot, impl=polystore, whose shape
// BenchmarkThreeWrites explains, queued with ExecAtCommit, or run with
// tx.Exec, impl=polystore-exec), sagasInFlight at a time, with the same
// three writes done directly at the same concurrency. It reports sagas/s;
// the target is polystore at 0.75x raw or more. -count
// repeats each side in a row, so to interleave them under a changing load
// alternate one process per side:
//
//	go test -c -o /tmp/coord.test ./coord/ && cd coord
//	for i in 1 2 3 4 5 6; do for impl in raw polystore polystore-exec polystore-sequential; do
//		/tmp/coord.test -test.run '^$' -test.benchtime 5s -test.benchmem \
//			-test.bench "ThreeWritesConcurrent/impl=$impl\$"
//	done; done | tee /tmp/concurrent.txt
//	benchstat -col /impl /tmp/concurrent.txt
func BenchmarkThreeWritesConcurrent(b *testing.B) {
	w, seq, grouped, groupedExec, rt := newConcurrentThreeWrites(b)
	ctx := context.Background()
	var ids atomic.Int64
	impls := []struct {
		name string
		do   func(s *benchState) error
	}{
		{"raw", func(s *benchState) error { return w.raw(ctx, s) }},
		{"polystore", func(s *benchState) error {
			_, err := grouped.Run(ctx, s.ID, s)
			return err
		}},
		{"polystore-exec", func(s *benchState) error {
			_, err := groupedExec.Run(ctx, s.ID, s)
			return err
		}},
		{"polystore-sequential", func(s *benchState) error {
			_, err := seq.Run(ctx, s.ID, s)
			return err
		}},
	}
	for _, impl := range impls {
		warm := false
		b.Run("impl="+impl.name, func(b *testing.B) {
			next := func() *benchState {
				id := fmt.Sprintf("c-%s-%d", impl.name, ids.Add(1))
				return &benchState{ID: id, Email: id + "@example.com"}
			}
			do := func() error { return impl.do(next()) }
			if !warm {
				// Each side's first sagas open the pools' connections and
				// prepare their statements on each (PostgreSQL plans a
				// statement anew for its first five runs on a connection):
				// a one-time cost, which is not the throughput measured.
				warm = true
				if err := inFlight(warmUp, sagasInFlight, do); err != nil {
					b.Fatal(err)
				}
			}
			runInFlight(b, sagasInFlight, rt, do)
		})
	}
}

// warmUp is how many sagas each side of BenchmarkThreeWritesConcurrent
// runs before it is timed: enough for every connection that sagasInFlight
// sagas use to run each statement more than five times.
const warmUp = 20 * sagasInFlight

// runInFlight calls do b.N times in all from n goroutines, and reports the
// calls per second as sagas/s and the PostgreSQL round trips per call as
// pg-rt/op (counting the round trips made while the timer runs: the final
// records of earlier sagas that land then are in, those written after it
// stops are not).
func runInFlight(b *testing.B, n int, rt *roundTrips, do func() error) {
	before := rt.n.Load()
	b.ResetTimer()
	err := inFlight(b.N, n, do)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sagas/s")
	b.ReportMetric(float64(rt.n.Load()-before)/float64(b.N), "pg-rt/op")
}

// inFlight calls do total times in all from n goroutines, and returns the
// first error.
func inFlight(total, n int, do func() error) error {
	var (
		left    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	left.Store(int64(total))
	for range n {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := do(); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
