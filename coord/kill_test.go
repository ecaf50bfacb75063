package coord

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The child process: the test binary itself, started with these variables,
// runs one saga and hangs after the write of one step until it is killed.
const (
	childEnv        = "COORD_KILL_CHILD" // the step to hang after
	childPostgres   = "COORD_KILL_POSTGRES"
	childRedis      = "COORD_KILL_REDIS"
	childPrefix     = "COORD_KILL_PREFIX"
	childMongo      = "COORD_KILL_MONGO"
	childMongoDB    = "COORD_KILL_MONGO_DB"
	childSagaID     = "COORD_KILL_SAGA"
	childGroup      = "COORD_KILL_GROUP" // set: the saga with parallel groups (group_test.go)
	hangSignal      = "coord-kill-test: hanging"
	childLeaseInMS  = 300
	childWaitForMax = 60 * time.Second
)

func TestMain(m *testing.M) {
	if step := os.Getenv(childEnv); step != "" {
		if err := runChild(step); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs the registration saga on the stores named by the
// environment, hanging after the write of step.
func runChild(step string) error {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv(childPostgres))
	if err != nil {
		return err
	}
	ropts, err := redis.ParseURL(os.Getenv(childRedis))
	if err != nil {
		return err
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(os.Getenv(childMongo)))
	if err != nil {
		return err
	}
	f := &fixture{
		pool: pool, rdb: redis.NewClient(ropts), prefix: os.Getenv(childPrefix),
		convs:    mc.Database(os.Getenv(childMongoDB)).Collection("conversations"),
		failures: map[string]int{}, after: map[string]int{}, calls: map[string]int{},
		hang: step,
	}
	c, err := New(ctx, pool, Options{Owner: "child", LeaseDuration: childLeaseInMS * time.Millisecond})
	if err != nil {
		return err
	}
	d := f.definition()
	if os.Getenv(childGroup) != "" {
		d = groupDefinition(f, nil)
	}
	h, err := Register(c, d)
	if err != nil {
		return err
	}
	id := os.Getenv(childSagaID)
	_, err = h.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
	return fmt.Errorf("the saga ended instead of hanging: %v", err)
}

// TestRecover_ProcessKilledMidStepEndsConsistent kills, with SIGKILL, a
// process that runs a saga while a step is in flight (inside the step's
// open transaction for TxActions), then recovers in this process.
func TestRecover_ProcessKilledMidStepEndsConsistent(t *testing.T) {
	for _, step := range []string{stepCreateUser, stepWelcome, stepActivate} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			id := "killed-" + step
			killChildAtHang(t, f, id, step)

			recoverer, rh := f.coordinator(t, Options{Owner: "recoverer", LeaseDuration: testLease})
			// Killed inside the first transaction, which carries the
			// saga's record, the saga is not in the log and took no effect:
			// Run again runs it. Killed later, recovery finishes it.
			_, err := recoverer.Get(context.Background(), id)
			assert.Equal(t, step == stepCreateUser, errors.Is(err, ErrNotFound), "in the log: %v", err)
			finishCut(t, f, recoverer, rh, id)
			info, err := recoverer.Get(context.Background(), id)
			require.NoError(t, err)
			assert.Equal(t, StatusSucceeded, info.Status)
			assert.Equal(t, allApplied, f.effects(t, id))
		})
	}
}

// killChildAtHang runs this test binary as a child process that runs the
// saga id on the fixture's stores and hangs at step (childEnv; extraEnv
// adds settings such as childGroup), waits until it announces the hang, and
// kills it with SIGKILL.
func killChildAtHang(t *testing.T, f *fixture, id, step string, extraEnv ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		childEnv+"="+step,
		childPostgres+"="+f.pool.Config().ConnString(),
		childRedis+"="+servicetest.RedisURL(t),
		childPrefix+"="+f.prefix,
		childMongo+"="+servicetest.MongoURL(t),
		childMongoDB+"="+f.convs.Database().Name(),
		childSagaID+"="+id,
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	hanging := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == hangSignal {
				hanging <- true
				return
			}
		}
		hanging <- false
	}()
	select {
	case ok := <-hanging:
		require.True(t, ok, "the child exited before reaching step %q", step)
	case <-time.After(childWaitForMax):
		t.Fatalf("the child did not reach step %q", step)
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
}
