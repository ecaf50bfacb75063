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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/crypto/bcrypt"

	"github.com/polystore/polystore/examples/server/internal/mongostore"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/internal/servicetest"
)

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

	dbURL := servicetest.PostgresURL(t)
	cfg, err := pgxpool.ParseConfig(dbURL)
	require.NoError(t, err)
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	rdb, prefix := servicetest.Redis(t)
	mdb := servicetest.Mongo(t)
	stores := server.Stores{Postgres: pool, Redis: rdb, Mongo: mdb}
	opts := server.Options{
		RedisPrefix: prefix, RateLimit: -1, BcryptCost: bcrypt.MinCost,
		SagaLease: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}
	a, err := server.New(ctx, stores, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	hs := httptest.NewServer(a.Handler())
	t.Cleanup(hs.Close)

	// The killer: its own connection to the test's database, terminating
	// every other backend there (the server pool's) until the clients end.
	killer, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = killer.Close(context.Background()) })
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

	client := &http.Client{Timeout: time.Minute}
	results := make([][]registration, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				name := fmt.Sprintf("u%d_%d", c, i)
				results[c] = append(results[c], register(t, client, hs.URL, name))
			}
		})
	}
	wg.Wait()
	close(done)
	require.NoError(t, <-killed)
	require.Positive(t, terminated.Load(), "the test cut connections")

	// Recovery, by another instance on a fresh pool, until no saga is left
	// unfinished; A's leases expire after SagaLease.
	pool2, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool2.Close)
	b, err := server.New(ctx, server.Stores{Postgres: pool2, Redis: rdb, Mongo: mdb}, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	unfinished := func() int {
		var n int
		require.NoError(t, pool2.QueryRow(ctx, "SELECT count(*) FROM coord_saga WHERE status IN ('running', 'compensating')").Scan(&n))
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for unfinished() > 0 {
		require.True(t, time.Now().Before(deadline), "recovery did not finish every saga in time")
		_, err := b.Recover(ctx)
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond) // for the leases to expire; bounded by the deadline
	}

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
	var failed int
	require.NoError(t, pool2.QueryRow(ctx, "SELECT count(*) FROM coord_saga WHERE status = 'failed'").Scan(&failed))
	assert.Zero(t, failed, "no saga left for an operator")
	t.Logf("answers %v, backends terminated %d, users %d", counts, terminated.Load(), len(users))
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
