package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/polystore/polystore/tools/loadgen/mixed"
)

// checker reads the stores themselves (not through the server's proxies)
// and the server's answers after the healing.
type checker struct {
	pg     *pgxpool.Pool
	rdb    *redis.Client
	convs  *mongo.Collection
	prefix string // the server's REDIS_PREFIX
	client *http.Client
	// orphansSeen holds what was already reported, so that each breach is
	// counted once, against the scenario that left it: conversations
	// without a user (their ObjectID, 24 hex digits) and users without a
	// conversation (their UUID) from checkPairs, and failed sagas
	// ("saga:" and their id) from failedSince. The three forms never
	// collide.
	orphansSeen map[string]bool
}

// sagaRow is a saga of coord's log.
type sagaRow struct {
	ID, Name, Status, Error string
}

// unfinishedSagas returns the sagas still running or compensating.
func (c *checker) unfinishedSagas(ctx context.Context) ([]sagaRow, error) {
	return c.sagas(ctx, "status in ('running', 'compensating')")
}

// failedSagas returns the sagas left for an operator (failed, dead).
func (c *checker) failedSagas(ctx context.Context) ([]sagaRow, error) {
	return c.sagas(ctx, "status not in ('running', 'compensating', 'succeeded', 'compensated', 'resolved')")
}

func (c *checker) sagas(ctx context.Context, where string) ([]sagaRow, error) {
	rows, err := c.pg.Query(ctx, "select id, name, status, last_error from coord_saga where "+where+" order by id")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (sagaRow, error) {
		var s sagaRow
		err := r.Scan(&s.ID, &s.Name, &s.Status, &s.Error)
		return s, err
	})
}

// waitRecovered polls until coord's recovery has left no saga running or
// compensating, at most timeout; it returns those left then.
func (c *checker) waitRecovered(ctx context.Context, timeout time.Duration) ([]sagaRow, error) {
	var left []sagaRow
	err := waitFor(ctx, timeout, func() error {
		var err error
		left, err = c.unfinishedSagas(ctx)
		if err == nil && len(left) > 0 {
			err = fmt.Errorf("%d sagas unfinished", len(left))
		}
		return err
	})
	if len(left) > 0 {
		return left, nil
	}
	return nil, err
}

// violations collects what broke a promise.
type violations []string

func (v *violations) add(format string, args ...any) { *v = append(*v, fmt.Sprintf(format, args...)) }

// operationStatus reads an operation a 202 named.
func (c *checker) operationStatus(ctx context.Context, base, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	if err != nil {
		return "", err
	}
	res, err := c.client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("%s: %s", path, res.Status)
	}
	return body.Status, nil
}

// profile reads GET /users/{id} after the healing: its status and email.
func (c *checker) profile(ctx context.Context, base, id string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/users/"+id, nil)
	if err != nil {
		return 0, "", err
	}
	res, err := c.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, "", err
	}
	var body struct {
		Email string `json:"email"`
	}
	_ = json.Unmarshal(b, &body)
	return res.StatusCode, body.Email, nil
}

// userRow reads a user's row: its email, and whether it exists.
func (c *checker) userRow(ctx context.Context, id string) (string, bool, error) {
	var email string
	err := c.pg.QueryRow(ctx, "select email from users where id = $1", id).Scan(&email)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return email, err == nil, err
}

// conversationsOf returns the ids of the user's conversations in MongoDB.
func (c *checker) conversationsOf(ctx context.Context, id string) ([]string, error) {
	cur, err := c.convs.Find(ctx, bson.D{{Key: "user_id", Value: id}})
	if err != nil {
		return nil, err
	}
	var docs []struct {
		ID bson.ObjectID `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID.Hex()
	}
	return ids, nil
}

// redisLeftovers returns the keys of a deleted user that hold data: its
// cached profile (a value, not a tombstone nor an invalidation marker) and
// its sessions' index.
func (c *checker) redisLeftovers(ctx context.Context, id string) ([]string, error) {
	var left []string
	key := c.prefix + "profile:" + id
	b, err := c.rdb.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return nil, err
	case len(b) > 0 && (b[0] == 'v' || b[0] == 'x'): // cacherepo's value headers
		left = append(left, key)
	}
	sum := sha256.Sum256([]byte(id))
	idx := c.prefix + "session:{" + hex.EncodeToString(sum[:])[:8] + "}:u:" + id
	n, err := c.rdb.Exists(ctx, idx).Result()
	if err != nil {
		return nil, err
	}
	if n > 0 {
		left = append(left, idx)
	}
	return left, nil
}

// checked counts what checkRecord compared with the stores, so that the
// table shows the checks were not vacuous.
type checked struct {
	users      int // registered with 201 and alive: row, welcome conversation, profile
	deletes    int // acknowledged DELETEs (204, or 202 that succeeded)
	patched    int // users with an acknowledged PATCH
	operations int // 202s whose operation was read after recovery
}

// checkRecord checks what one scenario's load was promised against the
// stores and the server's answers, once the faults are healed and recovery
// has run.
func (c *checker) checkRecord(ctx context.Context, base string, rec *mixed.Record, v *violations) (n checked, err error) {
	// 202s: recovery finished them one way or the other.
	for _, op := range rec.Operations {
		status, err := c.operationStatus(ctx, base, op.Path)
		if err != nil {
			return n, err
		}
		n.operations++
		switch status {
		case "succeeded", "compensated":
		default:
			v.add("operation %s is %q after recovery", op.Path, status)
		}
		if op.Kind == "delete-user" && status == "succeeded" {
			n.deletes++
			if err := c.checkGone(ctx, op.UserID, "a DELETE answered 202, succeeded", v); err != nil {
				return n, err
			}
		}
		if op.Kind == "register-user" {
			if err := c.checkRegistration(ctx, op.UserID, "", status == "succeeded", v); err != nil {
				return n, err
			}
		}
	}
	for _, u := range rec.Users {
		switch {
		case u.Deleted:
			n.deletes++
			if err := c.checkGone(ctx, u.ID, "a DELETE answered 204", v); err != nil {
				return n, err
			}
			continue
		case u.DeleteUnacked:
			continue // its DELETE may or may not have happened: the pairing checks cover it
		}
		if err := c.checkRegistration(ctx, u.ID, u.WelcomeConversation, true, v); err != nil {
			return n, err
		}
		n.users++
		if u.Email != u.Username+"@example.org" {
			n.patched++
		}
		email, ok, err := c.userRow(ctx, u.ID)
		if err != nil {
			return n, err
		}
		if !ok {
			continue // reported by checkRegistration
		}
		if email != u.Email && (u.UnackedEmail == "" || email != u.UnackedEmail) {
			v.add("user %s: row has email %s, the last acknowledged PATCH set %s", u.ID, email, u.Email)
		}
		status, got, err := c.profile(ctx, base, u.ID)
		if err != nil {
			return n, err
		}
		if status != http.StatusOK || got != email {
			v.add("user %s: GET after healing answered %d with email %q, its row has %q (stale cache)", u.ID, status, got, email)
		}
		convs, err := c.conversationsOf(ctx, u.ID)
		if err != nil {
			return n, err
		}
		for _, id := range u.Conversations {
			if !slices.Contains(convs, id) {
				v.add("user %s: conversation %s, created with 201, is not in MongoDB", u.ID, id)
			}
		}
	}
	return n, nil
}

// checkRegistration checks that a user registered with 201 (or whose
// registration's operation succeeded) has its row and its welcome
// conversation, or that one compensated left neither.
func (c *checker) checkRegistration(ctx context.Context, id, welcome string, exists bool, v *violations) error {
	_, ok, err := c.userRow(ctx, id)
	if err != nil {
		return err
	}
	convs, err := c.conversationsOf(ctx, id)
	if err != nil {
		return err
	}
	switch {
	case exists && !ok:
		v.add("user %s: registered (201 or succeeded), no user row", id)
	case exists && welcome != "" && !slices.Contains(convs, welcome):
		v.add("user %s: registered with 201, its welcome conversation %s is not in MongoDB", id, welcome)
	case exists && len(convs) == 0:
		v.add("user %s: registered, no conversation in MongoDB", id)
	case !exists && (ok || len(convs) > 0):
		v.add("user %s: registration compensated, yet row=%v and %d conversations left", id, ok, len(convs))
	}
	return nil
}

// checkGone checks that a deleted user left nothing in any store.
func (c *checker) checkGone(ctx context.Context, id, why string, v *violations) error {
	_, ok, err := c.userRow(ctx, id)
	if err != nil {
		return err
	}
	if ok {
		v.add("user %s: %s, its row is still in PostgreSQL", id, why)
	}
	convs, err := c.conversationsOf(ctx, id)
	if err != nil {
		return err
	}
	if len(convs) > 0 {
		v.add("user %s: %s, %d conversations are still in MongoDB", id, why, len(convs))
	}
	keys, err := c.redisLeftovers(ctx, id)
	if err != nil {
		return err
	}
	if len(keys) > 0 {
		v.add("user %s: %s, Redis still holds %s", id, why, strings.Join(keys, ", "))
	}
	return nil
}

// checkPairs checks every user row of the run against MongoDB and every
// conversation against PostgreSQL: no user without a conversation, no
// conversation without a user, whatever the answers said.
func (c *checker) checkPairs(ctx context.Context, v *violations) error {
	rows, err := c.pg.Query(ctx, "select id::text from users")
	if err != nil {
		return err
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	has := make(map[string]bool, len(users))
	for _, u := range users {
		has[u] = true
	}
	cur, err := c.convs.Find(ctx, bson.D{})
	if err != nil {
		return err
	}
	var docs []struct {
		ID     bson.ObjectID `bson:"_id"`
		UserID string        `bson:"user_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return err
	}
	withConv := map[string]bool{}
	for _, d := range docs {
		withConv[d.UserID] = true
		if !has[d.UserID] && !c.orphansSeen[d.ID.Hex()] {
			c.orphansSeen[d.ID.Hex()] = true
			v.add("conversation %s of user %s: no such user in PostgreSQL", d.ID.Hex(), d.UserID)
		}
	}
	for _, u := range users {
		if !withConv[u] && !c.orphansSeen[u] {
			c.orphansSeen[u] = true
			v.add("user %s: a row in PostgreSQL without any conversation in MongoDB", u)
		}
	}
	return nil
}

// serverGauges scrapes the server's /metrics for its goroutines and heap.
type serverGauges struct {
	goroutines float64
	heapGoal   float64 // go_memstats_next_gc_bytes: twice the live heap at the last GC (GOGC=100)
}

func (c *checker) gauges(ctx context.Context, base string) (serverGauges, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		return serverGauges{}, err
	}
	res, err := c.client.Do(req)
	if err != nil {
		return serverGauges{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return serverGauges{}, err
	}
	var g serverGauges
	var found int
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			g.goroutines, found = f, found+1
		case "go_memstats_next_gc_bytes":
			g.heapGoal, found = f, found+1
		}
	}
	if found != 2 {
		return g, errors.New("/metrics has no go_goroutines or go_memstats_next_gc_bytes")
	}
	return g, nil
}
