package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/internal/servicetest"
)

// failingCache is a profile cache whose invalidations fail as with Redis
// down, while reads go through.
type failingCache struct{ chat.ProfileCache }

// Invalidate fails, changing nothing.
func (failingCache) Invalidate(context.Context, uuid.UUID) error {
	return chat.Errorf(chat.CodeUnavailable, "Redis is unavailable (injected)")
}

// recoverer starts a second instance on the stores of e with a working
// Redis under e's prefix and a short recovery interval: it finishes what e
// left to recovery, as another replica of the service would.
func recoverer(t *testing.T, e *env, rdb redis.UniversalClient) {
	t.Helper()
	b, err := server.New(t.Context(), server.Stores{Postgres: e.pool, Redis: rdb, Mongo: e.mongo}, server.Options{
		RedisPrefix: e.prefix, RateLimit: -1, SagaLease: 300 * time.Millisecond, RecoverEvery: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start(t.Context()))
	t.Cleanup(func() { _ = b.Close() })
}

// awaitOperation polls the operation at path on e until it is no longer
// pending, within a deadline, and returns its last answer.
func (e *env) awaitOperation(path string) response {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := e.do("GET", path, "")
		require.Equal(e.t, http.StatusOK, res.Status, "body: %s", res.Raw)
		if res.JSON["status"] != string(chat.OperationPending) {
			return res
		}
		require.True(e.t, time.Now().Before(deadline), "the operation is still pending: %s", res.Raw)
		time.Sleep(20 * time.Millisecond) // polling, with a deadline
	}
}

func TestServer_DeleteUser_Returns202WhenRecoveryMustFinishItAndTheOperationSaysWhenItIsDone(t *testing.T) {
	t.Parallel()
	// The profile cache failing (as when Redis is down; the sessions must
	// keep working, so only the cache is made to fail): the row and the
	// conversations go at once, the cached profile cannot, so the deletion
	// is not done when the request ends.
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		o.WrapProfileCache = func(c chat.ProfileCache) chat.ProfileCache { return failingCache{c} }
		o.SagaLease = 300 * time.Millisecond
	})
	id, _ := e.register("ada")

	res := e.doAs(id, "DELETE", "/users/"+id, "")
	require.Equal(t, http.StatusAccepted, res.Status, "body: %s", res.Raw)
	assert.Equal(t, http.StatusUnauthorized, e.doAs(id, "GET", "/users/"+id+"/conversations", "").Status,
		"the sessions were revoked right after the pivot, before the step left to recovery")
	loc := res.Header.Get("Location")
	require.Regexp(t, `^/operations/delete-user/`+id+`/[0-9a-f-]{36}$`, loc)
	assert.Equal(t, "pending", res.JSON["status"])
	assert.Equal(t, "delete-user", res.JSON["kind"])
	assert.Equal(t, id, res.JSON["user_id"])
	assert.Equal(t, "1", res.Header.Get("Retry-After"))
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))

	res = e.do("GET", loc, "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "pending", res.JSON["status"], "nobody has finished it yet")
	assert.Equal(t, loc, res.Header.Get("Content-Location"))

	rdb, _ := servicetest.Redis(t)
	recoverer(t, e, rdb)
	res = e.awaitOperation(loc)
	assert.Equal(t, "succeeded", res.JSON["status"])
	assert.NotContains(t, res.JSON, "user", "a deleted user has no URL")
	assert.Empty(t, res.Header.Get("Retry-After"))
	assert.Zero(t, e.userRows())
	assert.Empty(t, e.conversations())
}

func TestServer_PatchUser_Returns200WhenOnlyTheCacheInvalidationIsLeftToRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		o.WrapProfileCache = func(c chat.ProfileCache) chat.ProfileCache { return failingCache{c} }
	})
	id, _ := e.register("ada")

	res := e.doAs(id, "PATCH", "/users/"+id, `{"level":"C1"}`, "If-Match", `"1"`)
	require.Equal(t, http.StatusOK, res.Status, "the change is committed and its invalidation logged: %s", res.Raw)
	assert.EqualValues(t, 2, res.JSON["version"])
	var status string
	require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT status FROM coord_saga WHERE name = 'update-user'").Scan(&status))
	assert.Equal(t, "running", status, "the invalidation waits in the log for recovery")
}

// lockingConversations creates conversations, and after the first one
// locks the saga log table from another connection until the test releases
// it: the saga's log write after its pivot then fails (the server's pool
// has a short lock_timeout), as under a PostgreSQL outage that begins
// right after a step, and the registration is left to recovery.
type lockingConversations struct {
	chat.ConversationStore
	lock   *pgxpool.Pool // a pool without lock_timeout
	once   *sync.Once
	holder chan pgx.Tx
}

func (s lockingConversations) CreateConversation(ctx context.Context, c *chat.Conversation) error {
	err := s.ConversationStore.CreateConversation(ctx, c)
	s.once.Do(func() {
		tx, lerr := s.lock.Begin(context.WithoutCancel(ctx))
		if lerr == nil {
			_, lerr = tx.Exec(context.WithoutCancel(ctx), "LOCK TABLE coord_saga IN ACCESS EXCLUSIVE MODE")
		}
		if lerr != nil {
			err = errors.Join(err, lerr)
		}
		s.holder <- tx
	})
	return err
}

func TestServer_PostUsers_Returns202WhenTheRegistrationIsLoggedButUnfinished_AndNoStale404Outlives(t *testing.T) {
	t.Parallel()
	held := make(chan pgx.Tx, 1)
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		cfg := s.Postgres.Config().Copy()
		cfg.ConnConfig.RuntimeParams["lock_timeout"] = "300ms"
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		lock := s.Postgres
		s.Postgres = pool
		o.SagaLease = 300 * time.Millisecond
		o.WrapConversations = func(c chat.ConversationStore) chat.ConversationStore {
			return lockingConversations{ConversationStore: c, lock: lock, once: new(sync.Once), holder: held}
		}
	})

	res := e.do("POST", "/users", `{"username":"ada","email":"ada@example.org","password":"correct horse","language":"fr"}`)
	tx := <-held
	require.NoError(t, tx.Rollback(context.Background()), "the lock is released")
	require.Equal(t, http.StatusAccepted, res.Status, "body: %s", res.Raw)
	id := res.JSON["user_id"].(string)
	loc := res.Header.Get("Location")
	assert.Equal(t, "/operations/register-user/"+id, loc)
	assert.Equal(t, "pending", res.JSON["status"])
	assert.Equal(t, "register-user", res.JSON["kind"])
	assert.NotContains(t, res.JSON, "user", "no user URL before it is done")

	res = e.do("GET", loc, "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "pending", res.JSON["status"])

	// A read of the profile that found no row before the insert committed
	// leaves a "not found" in the cache for 30 s, which must not outlive
	// the registration: the saga's last step overwrites it.
	cache, err := redisstore.NewProfileCache(e.redis, e.prefix, redisstore.ProfileCacheOptions{})
	require.NoError(t, err)
	_, err = cache.Profile(t.Context(), uuid.MustParse(id), func(context.Context) (*chat.User, error) {
		return nil, chat.Errorf(chat.CodeNotFound, "user not found")
	})
	require.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
	require.Equal(t, http.StatusNotFound, e.do("GET", "/users/"+id, "").Status, "the stale not-found is served meanwhile")

	recoverer(t, e, e.redis)
	res = e.awaitOperation(loc)
	assert.Equal(t, "succeeded", res.JSON["status"])
	assert.Equal(t, "/users/"+id, res.JSON["user"])

	got := e.do("GET", "/users/"+id, "")
	require.Equal(t, http.StatusOK, got.Status, "no stale 404 once the operation says succeeded: %s", got.Raw)
	assert.Equal(t, "ada", got.JSON["username"])
	convs := e.conversations()
	require.Len(t, convs, 1, "one welcome conversation, however many times its step ran")
	assert.Equal(t, id, convs[0]["user_id"])
}

func TestServer_GetOperation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.register("ada")

	res := e.do("GET", "/operations/register-user/"+id, "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "succeeded", res.JSON["status"])
	assert.Equal(t, "/users/"+id, res.JSON["user"])
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	assert.Empty(t, res.Header.Get("Retry-After"), "nothing to wait for")

	taken := e.do("POST", "/users", `{"username":"ada","email":"other@example.org","password":"correct horse","language":"fr"}`)
	require.Equal(t, http.StatusConflict, taken.Status)
	var compensated string
	require.NoError(t, e.pool.QueryRow(t.Context(),
		"SELECT id FROM coord_saga WHERE name = 'register-user' AND status = 'compensated'").Scan(&compensated))
	res = e.do("GET", "/operations/"+compensated, "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "compensated", res.JSON["status"])
	assert.NotContains(t, res.JSON, "user")

	tests := []struct {
		name, path string
		status     int
	}{
		{"unknown registration", "/operations/register-user/" + uuid.NewString(), http.StatusNotFound},
		{"unknown update", "/operations/update-user/" + id + "/" + uuid.NewString(), http.StatusNotFound},
		{"unknown kind", "/operations/drop-user/" + id, http.StatusBadRequest},
		{"registration with an extra segment", "/operations/register-user/" + id + "/" + uuid.NewString(), http.StatusBadRequest},
		{"update without its own id", "/operations/update-user/" + id, http.StatusBadRequest},
		{"not a UUID", "/operations/register-user/42", http.StatusBadRequest},
		{"UUID in another spelling", "/operations/register-user/{" + id + "}", http.StatusBadRequest},
		{"no id", "/operations/", http.StatusBadRequest},
	}
	for _, tt := range tests {
		res := e.do("GET", tt.path, "")
		assert.Equal(t, tt.status, res.Status, "%s: %s", tt.name, res.Raw)
		assert.NotEmpty(t, res.JSON["code"], tt.name)
	}
}

func TestServer_StoreUnavailable_Returns503WithRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *server.Options, _ *server.Stores) {
		o.WrapConversations = func(s chat.ConversationStore) chat.ConversationStore { return failingConversations{s} }
	})
	res := e.do("POST", "/users", `{"username":"ada","email":"ada@example.org","password":"correct horse","language":"fr"}`)
	require.Equal(t, http.StatusServiceUnavailable, res.Status)
	secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After is a number of seconds")
	assert.Positive(t, secs)
}
