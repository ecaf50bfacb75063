package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The tests run the user-registration saga of the package example over the
// three real stores: a users row in PostgreSQL, a welcome conversation in
// MongoDB, the activation of the user (the pivot), and a cached profile in
// Redis (retriable).

type regState struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

const (
	stepCreateUser = "create-user"
	stepWelcome    = "welcome-conversation"
	stepActivate   = "activate-user"
	stepCache      = "cache-profile"
)

var errInjected = errors.New("injected failure")

// fixture holds the stores of one test and the failures to inject.
type fixture struct {
	pool   *pgxpool.Pool
	rdb    *redis.Client
	prefix string
	convs  *mongo.Collection

	mu       sync.Mutex
	failures map[string]int // "step" or "step/compensate" → failures left, -1 for ever
	after    map[string]int // "step" → failures left after the step's write, -1 for ever
	hang     string         // the step after whose write the process announces it and hangs (see kill_test.go)
	calls    map[string]int // "sagaID/step" or "sagaID/step/compensate" → invocations
	wraps    error          // an error the injected failures wrap besides errInjected, if not nil
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{pool: servicetest.Postgres(t), failures: map[string]int{}, after: map[string]int{}, calls: map[string]int{}}
	f.rdb, f.prefix = servicetest.Redis(t)
	f.convs = servicetest.Mongo(t).Collection("conversations")
	_, err := f.pool.Exec(context.Background(),
		`create table users (id text primary key, email text not null, active boolean not null default false)`)
	require.NoError(t, err)
	return f
}

// fail makes the action (or the compensation, when comp) of step fail n
// more times; n < 0 for ever.
func (f *fixture) fail(step string, comp bool, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[opName(step, comp)] = n
}

// failAfterWrite makes the action of step fail n more times after its write
// took effect, as a timeout after the write would; n < 0 for ever.
func (f *fixture) failAfterWrite(step string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after[step] = n
}

// leave returns the failure injected after the step's write, if any.
func (f *fixture) leave(step string) error {
	if f.hang == step {
		fmt.Println(hangSignal)
		select {} // until the parent kills the process
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.after[step]
	if n == 0 {
		return nil
	}
	if n > 0 {
		f.after[step] = n - 1
	}
	return fmt.Errorf("%s after its write: %w", step, errInjected)
}

func opName(step string, comp bool) string {
	if comp {
		return step + "/compensate"
	}
	return step
}

// enter counts an invocation and returns the injected failure, if any.
func (f *fixture) enter(id, step string, comp bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[id+"/"+opName(step, comp)]++
	n := f.failures[opName(step, comp)]
	if n == 0 {
		return nil
	}
	if n > 0 {
		f.failures[opName(step, comp)] = n - 1
	}
	if f.wraps != nil {
		return fmt.Errorf("%s: %w: %w", opName(step, comp), errInjected, f.wraps)
	}
	return fmt.Errorf("%s: %w", opName(step, comp), errInjected)
}

func (f *fixture) callCount(id, step string, comp bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id+"/"+opName(step, comp)]
}

func (f *fixture) cacheKey(userID string) string { return f.prefix + "profile:" + userID }

var fastRetry = RetryPolicy{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

// definition returns the user-registration saga.
func (f *fixture) definition() *Definition[regState] {
	return Define("register-user",
		Step[regState]{
			Name: stepCreateUser,
			TxAction: func(ctx context.Context, tx Tx, s *regState) error {
				if err := f.enter(s.UserID, stepCreateUser, false); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `insert into users (id, email) values ($1, $2)`, s.UserID, s.Email); err != nil {
					return err
				}
				return f.leave(stepCreateUser)
			},
			TxCompensate: func(ctx context.Context, tx Tx, s *regState) error {
				if err := f.enter(s.UserID, stepCreateUser, true); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `delete from users where id = $1`, s.UserID)
				return err
			},
			Retry: fastRetry,
		},
		Step[regState]{
			Name: stepWelcome,
			Action: func(ctx context.Context, s *regState) error {
				if err := f.enter(s.UserID, stepWelcome, false); err != nil {
					return err
				}
				if _, err := MongoInsert(ctx, f.convs, bson.D{{Key: "_id", Value: s.UserID}, {Key: "title", Value: "Welcome " + s.Email}}); err != nil {
					return err
				}
				return f.leave(stepWelcome)
			},
			Compensate: func(ctx context.Context, s *regState) error {
				if err := f.enter(s.UserID, stepWelcome, true); err != nil {
					return err
				}
				_, err := MongoDelete(ctx, f.convs, s.UserID)
				return err
			},
			Retry: fastRetry,
		},
		Step[regState]{
			Name: stepActivate,
			Kind: Pivot,
			TxAction: func(ctx context.Context, tx Tx, s *regState) error {
				if err := f.enter(s.UserID, stepActivate, false); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `update users set active = true where id = $1`, s.UserID); err != nil {
					return err
				}
				return f.leave(stepActivate)
			},
			Retry: fastRetry,
		},
		Step[regState]{
			Name: stepCache,
			Kind: Retriable,
			Action: func(ctx context.Context, s *regState) error {
				if err := f.enter(s.UserID, stepCache, false); err != nil {
					return err
				}
				_, err := RedisSet(ctx, f.rdb, f.cacheKey(s.UserID), s.Email, 0)
				return err
			},
			Retry: fastRetry,
		},
	)
}

// coordinator returns a coordinator on the fixture's database with the
// registration saga registered.
func (f *fixture) coordinator(t *testing.T, opts Options) (*Coordinator, *Handle[regState]) {
	t.Helper()
	c, err := New(context.Background(), f.pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	h, err := Register(c, f.definition())
	require.NoError(t, err)
	return c, h
}

// runAsync runs the saga id in a goroutine; the channel receives Run's error.
func runAsync[S any](h *Handle[S], id string, state *S) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := h.Run(context.Background(), id, state)
		done <- err
	}()
	return done
}

// effects reports what the saga of user id left in the three stores.
type effects struct {
	User, Active, Conversation, Cached bool
}

func (f *fixture) effects(t *testing.T, id string) effects {
	t.Helper()
	ctx := context.Background()
	var e effects
	var n int
	require.NoError(t, f.pool.QueryRow(ctx, `select count(*), coalesce(bool_or(active), false) from users where id = $1`, id).Scan(&n, &e.Active))
	e.User = n == 1
	count, err := f.convs.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	e.Conversation = count == 1
	exists, err := f.rdb.Exists(ctx, f.cacheKey(id)).Result()
	require.NoError(t, err)
	e.Cached = exists == 1
	return e
}

var (
	allApplied = effects{User: true, Active: true, Conversation: true, Cached: true}
	noneLeft   = effects{}
)
