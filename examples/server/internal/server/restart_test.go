package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/crypto/bcrypt"

	"github.com/polystore/polystore/examples/server/internal/mongostore"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/internal/servicetest"
)

// cutEnv is a server on stores of its own whose PostgreSQL connections a
// test can cut, and recover from.
type cutEnv struct {
	url   string
	dbURL string
	redis redis.UniversalClient
	mongo *mongo.Database
	opts  server.Options
}

// newCutEnv starts a server (A) on a fresh database, Redis prefix and
// MongoDB database, with a short saga lease so that recovery can take
// over what it leaves, and no recovery loop of its own.
func newCutEnv(t *testing.T) *cutEnv {
	t.Helper()
	ctx := t.Context()
	c := &cutEnv{dbURL: servicetest.PostgresURL(t), mongo: servicetest.Mongo(t)}
	var prefix string
	c.redis, prefix = servicetest.Redis(t)
	cfg, err := pgxpool.ParseConfig(c.dbURL)
	require.NoError(t, err)
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	c.opts = server.Options{
		RedisPrefix: prefix, RateLimit: -1, BcryptCost: bcrypt.MinCost,
		SagaLease: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}
	a, err := server.New(ctx, server.Stores{Postgres: pool, Redis: c.redis, Mongo: c.mongo}, c.opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	hs := httptest.NewServer(a.Handler())
	t.Cleanup(hs.Close)
	c.url = hs.URL
	return c
}

// cutWhile runs work while its own connection to the test's database
// terminates every other backend there (the server pool's) every 15 ms,
// and returns how many it terminated; it fails the test if none.
func (c *cutEnv) cutWhile(t *testing.T, work func()) int64 {
	t.Helper()
	ctx := t.Context()
	killer, err := pgx.Connect(ctx, c.dbURL)
	require.NoError(t, err)
	defer func() { _ = killer.Close(context.Background()) }()
	var dbName string
	require.NoError(t, killer.QueryRow(ctx, "SELECT current_database()").Scan(&dbName))
	done := make(chan struct{})
	var terminated atomic.Int64
	killed := make(chan error, 1)
	go func() {
		var kerr error
		defer func() { killed <- kerr }()
		for {
			select {
			case <-done:
				return
			case <-time.After(15 * time.Millisecond):
			}
			rows, err := killer.Query(ctx,
				"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbName)
			if err != nil {
				kerr = err
				return
			}
			n, err := pgx.CollectRows(rows, pgx.RowTo[bool])
			if err != nil {
				kerr = err
				return
			}
			terminated.Add(int64(len(n)))
		}
	}()
	work()
	close(done)
	require.NoError(t, <-killed)
	require.Positive(t, terminated.Load(), "the test cut connections")
	return terminated.Load()
}

// recoverAll runs recovery from a second instance (B) on a fresh pool
// until no saga is left unfinished, and returns that pool and B's URL
// (A's pool may still hold connections the test cut).
func (c *cutEnv) recoverAll(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, c.dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	b, err := server.New(ctx, server.Stores{Postgres: pool, Redis: c.redis, Mongo: c.mongo}, c.opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	unfinished := func() int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM coord_saga WHERE status IN ('running', 'compensating')").Scan(&n))
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for unfinished() > 0 {
		require.True(t, time.Now().Before(deadline), "recovery did not finish every saga in time")
		_, err := b.Recover(ctx)
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond) // for A's leases to expire; bounded by the deadline
	}
	var failed int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM coord_saga WHERE status = 'failed'").Scan(&failed))
	assert.Zero(t, failed, "no saga left for an operator")
	hs := httptest.NewServer(b.Handler())
	t.Cleanup(hs.Close)
	return pool, hs.URL
}

// registration is one POST /users of the restart test and its answer.
type registration struct {
	username string
	status   int
	userID   string // from a 201's user or a 202's operation
	convID   string // a 201's welcome conversation
	location string
	body     string
}

// TestServer_PostgresConnectionsCut_EveryAnswerTellsTheTruthAfterRecovery
// registers users from 4 clients while another connection keeps
// terminating the server pool's PostgreSQL backends (in the test's own
// database only: pg_terminate_backend, never a server restart). Then a
// second instance runs recovery until no saga is left unfinished, and the
// stores themselves are checked against every answer:
//
//   - 201: the user row and its welcome conversation exist;
//   - 202: the operation it names ends succeeded (user and conversation) or
//     compensated (neither), never missing from the log;
//   - 503: when it says nothing was changed, the user does not exist;
//   - no answer but 201, 202 and 503 (every username is new: no 409);
//   - no user without a conversation, no conversation without a user.
func TestServer_PostgresConnectionsCut_EveryAnswerTellsTheTruthAfterRecovery(t *testing.T) {
	t.Parallel()
	const clients, perClient = 4, 20
	ctx := t.Context()
	c := newCutEnv(t)

	client := &http.Client{Timeout: time.Minute}
	results := make([][]registration, clients)
	terminated := c.cutWhile(t, func() {
		var wg sync.WaitGroup
		for n := range clients {
			wg.Go(func() {
				for i := range perClient {
					name := fmt.Sprintf("u%d_%d", n, i)
					results[n] = append(results[n], register(t, client, c.url, name))
				}
			})
		}
		wg.Wait()
	})
	pool2, _ := c.recoverAll(t)
	mdb := c.mongo

	// What the stores hold.
	users := map[string]string{} // id -> username
	rows, err := pool2.Query(ctx, "SELECT id::text, username FROM users")
	require.NoError(t, err)
	for rows.Next() {
		var id, name string
		require.NoError(t, rows.Scan(&id, &name))
		users[id] = name
	}
	require.NoError(t, rows.Err())
	convs := map[string][]string{} // user id -> conversation ids
	cur, err := mdb.Collection(mongostore.CollectionName).Find(ctx, bson.D{})
	require.NoError(t, err)
	var docs []bson.M
	require.NoError(t, cur.All(ctx, &docs))
	for _, d := range docs {
		uid := d["user_id"].(string)
		convs[uid] = append(convs[uid], d["_id"].(bson.ObjectID).Hex())
	}
	sagaStatus := func(id string) string {
		var s string
		err := pool2.QueryRow(ctx, "SELECT status FROM coord_saga WHERE id = $1", id).Scan(&s)
		if err == pgx.ErrNoRows {
			return "missing"
		}
		require.NoError(t, err)
		return s
	}

	counts := map[int]int{}
	for _, rs := range results {
		for _, r := range rs {
			counts[r.status]++
			switch r.status {
			case http.StatusCreated:
				assert.Equal(t, r.username, users[r.userID], "201 for %s: the user row exists", r.username)
				assert.Equal(t, []string{r.convID}, convs[r.userID], "201 for %s: its welcome conversation exists", r.username)
			case http.StatusAccepted:
				require.NotEmpty(t, r.userID, "202 names the user: %s", r.body)
				assert.Equal(t, "/operations/register-user/"+r.userID, r.location)
				switch st := sagaStatus("register-user/" + r.userID); st {
				case "succeeded":
					assert.Equal(t, r.username, users[r.userID], "202 for %s, then succeeded: the user row exists", r.username)
					assert.Len(t, convs[r.userID], 1, "202 for %s, then succeeded: its conversation exists", r.username)
				case "compensated":
					assert.NotContains(t, users, r.userID, "202 for %s, then compensated: no user row", r.username)
					assert.NotContains(t, convs, r.userID, "202 for %s, then compensated: no conversation", r.username)
				default:
					assert.Fail(t, "a 202 whose operation did not end succeeded or compensated",
						"%s: saga %s: %s", r.username, st, r.body)
				}
			case http.StatusServiceUnavailable:
				var e struct{ Error string }
				require.NoError(t, json.Unmarshal([]byte(r.body), &e), r.body)
				if strings.Contains(e.Error, "nothing was changed") {
					for id, name := range users {
						assert.NotEqual(t, r.username, name, "503 saying nothing was changed, yet user %s exists", id)
					}
				}
			default:
				assert.Fail(t, "an answer other than 201, 202 or 503", "%s: %d %s", r.username, r.status, r.body)
			}
		}
	}
	for id, name := range users {
		assert.Len(t, convs[id], 1, "user %s has exactly one conversation", name)
	}
	for uid := range convs {
		assert.Contains(t, users, uid, "conversation of user %s without a user row", uid)
	}
	t.Logf("answers %v, backends terminated %d, users %d", counts, terminated, len(users))
}

// register sends one registration and records its answer.
func register(t *testing.T, client *http.Client, url, name string) registration {
	body := `{"username":"` + name + `","email":"` + name + `@example.org","password":"correct horse","language":"fr"}`
	r := registration{username: name}
	res, err := client.Post(url+"/users", "application/json", strings.NewReader(body))
	if !assert.NoError(t, err) {
		return r
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	assert.NoError(t, err)
	r.status, r.body, r.location = res.StatusCode, string(raw), res.Header.Get("Location")
	var parsed struct {
		User *struct {
			ID string `json:"id"`
		} `json:"user"`
		UserID         string `json:"user_id"`
		ConversationID string `json:"welcome_conversation_id"`
	}
	if json.Unmarshal(raw, &parsed) == nil {
		r.userID, r.convID = parsed.UserID, parsed.ConversationID
		if parsed.User != nil {
			r.userID = parsed.User.ID
		}
	}
	return r
}

// login logs name in (its password is register's) and returns the token.
func login(t *testing.T, client *http.Client, url, name string) string {
	t.Helper()
	res, err := client.Post(url+"/sessions", "application/json", strings.NewReader(`{"username":"`+name+`","password":"correct horse"}`))
	require.NoError(t, err)
	defer res.Body.Close()
	var s struct {
		Token string `json:"token"`
	}
	require.Equal(t, http.StatusCreated, res.StatusCode)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&s))
	return s.Token
}

// change is one PATCH or DELETE of the restart test and its answer.
type change struct {
	userID, method string
	status         int
	location, body string
}

// TestServer_PostgresConnectionsCut_UpdatesAndDeletionsTellTheTruth sends
// a PATCH (If-Match "1") or a DELETE for each of 40 users, from 4
// clients, while the server pool's PostgreSQL backends are terminated,
// then recovers as above and checks every answer against PostgreSQL,
// MongoDB and, through the cache, GET /users/{id}:
//
//   - PATCH 200: the row has the change; 202: the change is there if the
//     operation succeeded, not if it was compensated; a 503 saying nothing
//     was changed: the row is untouched; never a 412, since each user gets
//     one PATCH with its current version;
//   - DELETE 204: neither row nor conversation; 202: both gone if the
//     operation succeeded, both there if compensated; a 503 saying nothing
//     was changed: both there;
//   - GET /users/{id} then agrees with the row: no cached profile outlives
//     a change or a deletion.
func TestServer_PostgresConnectionsCut_UpdatesAndDeletionsTellTheTruth(t *testing.T) {
	t.Parallel()
	const clients, perClient = 4, 10
	ctx := t.Context()
	c := newCutEnv(t)
	client := &http.Client{Timeout: time.Minute}

	ids := make([]string, clients*perClient)
	tokens := make([]string, len(ids))
	for i := range ids {
		r := register(t, client, c.url, fmt.Sprintf("user%d", i))
		require.Equal(t, http.StatusCreated, r.status, r.body)
		ids[i] = r.userID
		tokens[i] = login(t, client, c.url, fmt.Sprintf("user%d", i))
		res, err := client.Get(c.url + "/users/" + r.userID) // cached, so that a stale profile would show
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		require.Equal(t, http.StatusOK, res.StatusCode)
	}

	results := make([]change, len(ids))
	terminated := c.cutWhile(t, func() {
		var wg sync.WaitGroup
		for n := range clients {
			wg.Go(func() {
				for i := n * perClient; i < (n+1)*perClient; i++ {
					ch := change{userID: ids[i], method: "PATCH"}
					var body io.Reader = strings.NewReader(`{"level":"C2"}`)
					if i%2 == 1 {
						ch.method, body = "DELETE", nil
					}
					req, err := http.NewRequestWithContext(ctx, ch.method, c.url+"/users/"+ids[i], body)
					if !assert.NoError(t, err) {
						return
					}
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("If-Match", `"1"`)
					req.Header.Set("Authorization", "Bearer "+tokens[i])
					res, err := client.Do(req)
					if !assert.NoError(t, err) {
						return
					}
					raw, err := io.ReadAll(res.Body)
					assert.NoError(t, err)
					assert.NoError(t, res.Body.Close())
					ch.status, ch.location, ch.body = res.StatusCode, res.Header.Get("Location"), string(raw)
					results[i] = ch
				}
			})
		}
		wg.Wait()
	})
	pool2, urlB := c.recoverAll(t)

	counts := map[string]int{}
	for i, ch := range results {
		counts[fmt.Sprintf("%s %d", ch.method, ch.status)]++
		var version int64
		var level string
		err := pool2.QueryRow(ctx, "SELECT version, level FROM users WHERE id = $1", ch.userID).Scan(&version, &level)
		exists := err == nil
		if !exists {
			require.ErrorIs(t, err, pgx.ErrNoRows)
		}
		n, err := c.mongo.Collection(mongostore.CollectionName).CountDocuments(ctx, bson.D{{Key: "user_id", Value: ch.userID}})
		require.NoError(t, err)
		changed := exists && version == 2 && level == "C2"
		untouched := exists && version == 1 && level != "C2"

		var outcome string // of a 202's operation
		if ch.status == http.StatusAccepted {
			prefix := "/operations/update-user/"
			if ch.method == "DELETE" {
				prefix = "/operations/delete-user/"
			}
			require.True(t, strings.HasPrefix(ch.location, prefix+ch.userID+"/"), "202's Location: %q", ch.location)
			require.NoError(t, pool2.QueryRow(ctx, "SELECT status FROM coord_saga WHERE id = $1",
				strings.TrimPrefix(ch.location, "/operations/")).Scan(&outcome), "the 202's operation is in the log")
		}
		nothingChanged := ch.status == http.StatusServiceUnavailable && strings.Contains(ch.body, "nothing was changed")

		switch {
		case ch.method == "PATCH" && (ch.status == http.StatusOK || outcome == "succeeded"):
			assert.True(t, changed, "PATCH %d (%s) on %s: the change is in the row (version %d, level %s)", ch.status, outcome, ch.userID, version, level)
		case ch.method == "PATCH" && (outcome == "compensated" || nothingChanged):
			assert.True(t, untouched, "PATCH %d (%s) on %s: the row is untouched (version %d, level %s)", ch.status, outcome, ch.userID, version, level)
		case ch.method == "DELETE" && (ch.status == http.StatusNoContent || outcome == "succeeded"):
			assert.False(t, exists, "DELETE %d (%s) on %s: no row", ch.status, outcome, ch.userID)
			assert.Zero(t, n, "DELETE %d (%s) on %s: no conversation", ch.status, outcome, ch.userID)
			req, err := http.NewRequestWithContext(ctx, "GET", urlB+"/users/"+ch.userID+"/conversations", nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+tokens[i])
			res, err := client.Do(req)
			require.NoError(t, err)
			require.NoError(t, res.Body.Close())
			assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "DELETE %d (%s) on %s: the session is revoked", ch.status, outcome, ch.userID)
		case ch.method == "DELETE" && (outcome == "compensated" || nothingChanged):
			assert.True(t, exists, "DELETE %d (%s) on %s: the row is there", ch.status, outcome, ch.userID)
		case ch.status == http.StatusServiceUnavailable:
			// The outcome is unknown to the client: the global checks below hold.
		default:
			assert.Fail(t, "an answer other than 2xx or 503", "%s %s: %d (%s) %s", ch.method, ch.userID, ch.status, outcome, ch.body)
		}
		if exists {
			assert.EqualValues(t, 1, n, "user %s has its welcome conversation", ch.userID)
			assert.True(t, changed || untouched, "user %s is at version 1 or has the change: version %d, level %s", ch.userID, version, level)
		} else {
			assert.Zero(t, n, "no conversation of deleted user %s", ch.userID)
		}

		// Through the cache, on B (A's pool may hold cut connections).
		res, err := client.Get(urlB + "/users/" + ch.userID)
		require.NoError(t, err)
		var profile struct{ Version int64 }
		assert.NoError(t, json.NewDecoder(res.Body).Decode(&profile))
		require.NoError(t, res.Body.Close())
		if exists {
			assert.Equal(t, http.StatusOK, res.StatusCode, "GET %s", ch.userID)
			assert.Equal(t, version, profile.Version, "GET %s: the cached profile is the row's", ch.userID)
		} else {
			assert.Equal(t, http.StatusNotFound, res.StatusCode, "GET %s: deleted, and no cached profile says otherwise", ch.userID)
		}
	}
	t.Logf("answers %v, backends terminated %d", counts, terminated)
}
