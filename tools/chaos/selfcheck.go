package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/polystore/polystore/tools/loadgen/mixed"
)

// selfCheck breaks each promise on purpose, behind the server's back, once
// the scenarios are done, and returns the breaches the checks did not
// report: none, or the checks are blind. rec is the last scenario's record.
//
//   - a conversation of a user who does not exist (MongoDB);
//   - a user row without any conversation (PostgreSQL);
//   - a live user's email changed in its row after the server cached its
//     profile: the row differs from the acknowledged PATCH, and GET from the
//     row (a stale cache);
//   - a live user claimed deleted (204), its profile read first so that
//     Redis caches it: its row, conversations and cache entry are all
//     still there.
func (h *harness) selfCheck(ctx context.Context, rec *mixed.Record) ([]string, error) {
	var live []*mixed.User
	for _, u := range rec.Users {
		if !u.Deleted && !u.DeleteUnacked && !u.Unanswered && u.UnackedEmail == "" {
			live = append(live, u)
		}
	}
	if len(live) < 2 {
		return nil, fmt.Errorf("self-check: %d users alive after the last scenario, want 2", len(live))
	}
	const ghost = "00000000-0000-4000-8000-00000000c4a0"
	if _, err := h.check.convs.InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "user_id", Value: ghost}, {Key: "title", Value: "planted"}}); err != nil {
		return nil, err
	}
	const lonely = "00000000-0000-4000-8000-00000000c4a1"
	if _, err := h.check.pg.Exec(ctx, `insert into users (id, username, email, password_hash, language, level)
		values ($1, 'planted', 'planted@example.org', 'x', 'fr', 'A1')`, lonely); err != nil {
		return nil, err
	}
	stale := *live[0]
	if _, _, err := h.check.profile(ctx, h.server.base, stale.ID); err != nil { // cached now
		return nil, err
	}
	if _, err := h.check.pg.Exec(ctx, "update users set email = 'changed.behind@example.org' where id = $1", stale.ID); err != nil {
		return nil, err
	}
	gone := *live[1]
	gone.Deleted = true
	if _, _, err := h.check.profile(ctx, h.server.base, gone.ID); err != nil { // its cache entry
		return nil, err
	}

	var v violations
	if err := h.check.checkPairs(ctx, &v); err != nil {
		return nil, err
	}
	if _, err := h.check.checkRecord(ctx, h.server.base, &mixed.Record{Users: []*mixed.User{&stale, &gone}}, &v); err != nil {
		return nil, err
	}
	var missed []string
	for _, want := range [][2]string{
		{"of user " + ghost, "no such user in PostgreSQL"},
		{"user " + lonely + ":", "a row in PostgreSQL without any conversation"},
		{"user " + stale.ID + ":", "row has email changed.behind@example.org"},
		{"user " + stale.ID + ":", "email \"" + stale.Email + "\", its row has \"changed.behind@example.org\" (stale cache)"},
		{"user " + gone.ID + ":", "a DELETE answered 204, its row is still in PostgreSQL"},
		{"user " + gone.ID + ":", "conversations are still in MongoDB"},
		{"user " + gone.ID + ":", "Redis still holds"},
	} {
		if !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, want[0]) && strings.Contains(s, want[1]) }) {
			missed = append(missed, want[0]+" ... "+want[1])
		}
	}
	return missed, nil
}
