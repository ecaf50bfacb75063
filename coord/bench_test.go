package coord

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkThreeWrites compares a three-step saga (PostgreSQL insert in the
// step's transaction, MongoDB insert and Redis set through the barrier
// helpers, one after the other: impl=polystore-sequential) with the same
// three writes done directly (impl=raw), with the saga whose log records
// are all durable (impl=polystore-sequential-durable), and with the saga
// whose MongoDB insert and Redis set run concurrently as a parallel group
// (impl=polystore: its PostgreSQL insert queued with ExecAtCommit;
// impl=polystore-exec: run with tx.Exec). The grouped saga's shape
// differs from the sequential one: the pivot cannot be inside a group, so
// the PostgreSQL insert is its pivot and both members are retriable
// (threeWrites.grouped), where the sequential saga compensates the
// PostgreSQL insert if the MongoDB insert, its pivot, fails. The writes
// are the same three. It reports sagas/s and the PostgreSQL round trips
// per saga (pg-rt/op), and the extra ones per step against the raw writes
// (extra-pg-rt/step).
func BenchmarkThreeWrites(b *testing.B) {
	var rt roundTrips
	w, h := newThreeWrites(b, &rt)
	ctx := context.Background()

	// The raw writes' round trips, the baseline of the extra ones.
	rt.n.Store(0)
	require.NoError(b, w.raw(ctx, &benchState{ID: "baseline", Email: "baseline@example.com"}))
	rawRT := float64(rt.n.Load())
	steps := float64(len(h.def.steps))

	var seq atomic.Int64
	next := func(impl string) *benchState {
		id := fmt.Sprintf("%s-%d", impl, seq.Add(1))
		return &benchState{ID: id, Email: id + "@example.com"}
	}
	run := func(b *testing.B, impl string, do func(s *benchState) error) {
		rt.n.Store(0)
		b.ResetTimer()
		for b.Loop() {
			if err := do(next(impl)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sagas/s")
		perOp := float64(rt.n.Load()) / float64(b.N)
		b.ReportMetric(perOp, "pg-rt/op")
		b.ReportMetric((perOp-rawRT)/steps, "extra-pg-rt/step")
	}

	b.Run("impl=raw", func(b *testing.B) {
		run(b, "raw", func(s *benchState) error { return w.raw(ctx, s) })
	})
	hg, err := Register(h.c, w.grouped(true))
	require.NoError(b, err)
	b.Run("impl=polystore", func(b *testing.B) {
		run(b, "saga-grouped", func(s *benchState) error {
			_, err := hg.Run(ctx, s.ID, s)
			return err
		})
	})
	hx, err := Register(h.c, w.grouped(false))
	require.NoError(b, err)
	b.Run("impl=polystore-exec", func(b *testing.B) {
		run(b, "saga-grouped-exec", func(s *benchState) error {
			_, err := hx.Run(ctx, s.ID, s)
			return err
		})
	})
	b.Run("impl=polystore-sequential", func(b *testing.B) {
		run(b, "saga", func(s *benchState) error {
			_, err := h.Run(ctx, s.ID, s)
			return err
		})
	})
	// The same saga with every log record durable: what the records
	// committed without waiting for the WAL flush save (README.md,
	// Non-durable records).
	durable, err := New(ctx, w.pool, Options{allDurable: true})
	require.NoError(b, err)
	hd, err := Register(durable, w.saga())
	require.NoError(b, err)
	b.Run("impl=polystore-sequential-durable", func(b *testing.B) {
		run(b, "saga-durable", func(s *benchState) error {
			_, err := hd.Run(ctx, s.ID, s)
			return err
		})
	})
}
