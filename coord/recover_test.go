package coord

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testLease = 200 * time.Millisecond

// boundaries runs a saga to the end and returns every boundary it crossed,
// in order.
func boundaries(t *testing.T, f *fixture, id string) []crashPoint {
	t.Helper()
	var points []crashPoint
	_, h := f.coordinator(t, Options{crashAt: func(p crashPoint) bool {
		points = append(points, p)
		return false
	}})
	_, _ = h.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
	return points
}

// recoverUntilFinal runs Recover on c until the saga id is final.
func recoverUntilFinal(t *testing.T, c *Coordinator, id string) Info {
	t.Helper()
	var info Info
	require.Eventually(t, func() bool {
		_, err := c.Recover(context.Background())
		require.NoError(t, err)
		info, err = c.Get(context.Background(), id)
		require.NoError(t, err)
		return info.Status.final()
	}, 15*time.Second, 10*time.Millisecond, "saga %s not recovered", id)
	return info
}

// TestRecover_CrashAtEveryBoundaryEndsConsistent cuts a run at each boundary
// it crosses, as a process dying there would, then lets a new coordinator
// recover the saga once the lease has expired: the three stores must end
// with every step applied, or every applied step compensated.
func TestRecover_CrashAtEveryBoundaryEndsConsistent(t *testing.T) {
	scenarios := []struct {
		name   string
		setup  func(f *fixture)
		status Status
		want   effects
	}{
		{"success", func(*fixture) {}, StatusSucceeded, allApplied},
		{"pivot fails", func(f *fixture) { f.fail(stepActivate, false, -1) }, StatusCompensated, noneLeft},
		{"mongo step fails", func(f *fixture) { f.fail(stepWelcome, false, -1) }, StatusCompensated, noneLeft},
		{"mongo step fails after its write", func(f *fixture) { f.failAfterWrite(stepWelcome, -1) }, StatusCompensated, noneLeft},
		{"retriable step fails twice", func(f *fixture) { f.fail(stepCache, false, 2) }, StatusSucceeded, allApplied},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			sc.setup(f)
			points := boundaries(t, f, "probe")
			require.NotEmpty(t, points)
			recoverer, rh := f.coordinator(t, Options{Owner: "recoverer", LeaseDuration: testLease})

			for i, p := range points {
				id := fmt.Sprintf("crash-%d", i)
				t.Run(fmt.Sprintf("%02d %s", i, p), func(t *testing.T) {
					sc.setup(f) // the same failures as the probe met, so the same boundaries
					n := 0
					_, crashed := f.coordinator(t, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(crashPoint) bool {
						n++
						return n == i+1
					}})
					// Both coordinators register the same definition under the
					// same name; each keeps its own registry.
					_, err := crashed.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
					require.ErrorIs(t, err, errCrashed)

					// Before the first commit (the record rides in the first
					// TxAction's transaction) nothing is logged, nothing done.
					finishCut(t, f, recoverer, rh, id)
					info, err := recoverer.Get(context.Background(), id)
					require.NoError(t, err)
					assert.Equal(t, sc.status, info.Status)
					assert.Equal(t, sc.want, f.effects(t, id))
				})
			}
		})
	}
}

// TestRecover_TwoCoordinatorsRecoverEachSagaExactlyOnce crashes 100 sagas
// after their first step, then lets two coordinators recover them at once,
// with one recovery worker each and with several.
func TestRecover_TwoCoordinatorsRecoverEachSagaExactlyOnce(t *testing.T) {
	for _, workers := range []int{1, 4, 16} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			const sagas = 100
			_, crashed := f.coordinator(t, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
				return p.Stage == stageBeforeAction && p.Step == stepWelcome
			}})
			ids := make([]string, sagas)
			for i := range ids {
				ids[i] = fmt.Sprintf("u%03d", i)
				_, err := crashed.Run(context.Background(), ids[i], &regState{UserID: ids[i], Email: ids[i] + "@example.com"})
				require.ErrorIs(t, err, errCrashed)
			}

			var taken atomic.Int64
			var wg sync.WaitGroup
			for _, owner := range []string{"b", "c"} {
				c, _ := f.coordinator(t, Options{Owner: owner, LeaseDuration: 10 * time.Second, RecoveryWorkers: workers})
				wg.Add(1)
				go func() {
					defer wg.Done()
					deadline := time.Now().Add(30 * time.Second)
					for time.Now().Before(deadline) {
						n, err := c.Recover(context.Background())
						assert.NoError(t, err)
						if taken.Add(int64(n)) >= sagas {
							return
						}
					}
				}()
			}
			wg.Wait()

			assert.EqualValues(t, sagas, taken.Load(), "each saga taken once")
			for _, id := range ids {
				assert.Equal(t, 1, f.callCount(id, stepWelcome, false), "%s: welcome action runs", id)
				assert.Equal(t, 1, f.callCount(id, stepCache, false), "%s: cache action runs", id)
				assert.Equal(t, allApplied, f.effects(t, id), id)
			}
		})
	}
}

func TestStart_BackgroundLoopRecoversUntilClosed(t *testing.T) {
	f := newFixture(t)
	_, crashed := f.coordinator(t, Options{LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
		return p.Stage == stageAfterLog && p.Step == stepWelcome
	}})
	_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)

	c, _ := f.coordinator(t, Options{RecoverEvery: 20 * time.Millisecond})
	require.NoError(t, c.Start(context.Background()))
	require.NoError(t, c.Start(context.Background()), "a second Start does nothing")
	require.Eventually(t, func() bool {
		info, err := c.Get(context.Background(), "u1")
		require.NoError(t, err)
		return info.Status == StatusSucceeded
	}, 15*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Close())
	assert.Equal(t, allApplied, f.effects(t, "u1"))
}

// TestRecover_ContinuesTheTriesOfTheStepItTakesOver cuts a run after the
// first failed try of a compensation: recovery makes the tries the policy
// has left, not the policy's tries again.
func TestRecover_ContinuesTheTriesOfTheStepItTakesOver(t *testing.T) {
	f := newFixture(t)
	f.fail(stepActivate, false, -1)
	f.fail(stepWelcome, true, -1)
	tries := 0
	_, crashed := f.coordinator(t, Options{LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
		if p.Stage == stageBeforeCompensate && p.Step == stepWelcome {
			tries++
		}
		return tries == 2
	}})
	_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)

	recoverer, _ := f.coordinator(t, Options{Owner: "recoverer", LeaseDuration: testLease})
	info := recoverUntilFinal(t, recoverer, "u1")
	assert.Equal(t, StatusFailed, info.Status)
	assert.Equal(t, fastRetry.Attempts, f.callCount("u1", stepWelcome, true), "tries in all, across the two runs")
	assert.Equal(t, fastRetry.Attempts, info.Attempts)
}
