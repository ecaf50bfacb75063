package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/internal/servicetest"
)

// deadRedis is a client of a port nothing listens on.
func deadRedis(t *testing.T) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialerRetries: 1, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestSessionStore_CreateUserDeleteRevokeAll_MapErrorsToCodes(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	ctx := context.Background()
	st, err := redisstore.NewSessionStore(client, prefix, redisstore.SessionStoreOptions{})
	require.NoError(t, err)
	ada, bob := uuid.New(), uuid.New()

	s1, err := st.Create(ctx, ada)
	require.NoError(t, err)
	s2, err := st.Create(ctx, ada)
	require.NoError(t, err)
	sb, err := st.Create(ctx, bob)
	require.NoError(t, err)
	assert.Equal(t, ada, s1.UserID)
	assert.WithinDuration(t, time.Now().Add(24*time.Hour), s1.ExpiresAt, time.Minute)

	got, err := st.User(ctx, s1.Token)
	require.NoError(t, err)
	assert.Equal(t, ada, got)

	for _, tok := range []string{"", "x", s1.Token + "x", "{" + s1.Token[1:]} {
		_, err := st.User(ctx, tok)
		assert.Equal(t, chat.CodeUnauthorized, chat.ErrorCode(err), "%q", tok)
	}

	require.NoError(t, st.Delete(ctx, s1.Token))
	_, err = st.User(ctx, s1.Token)
	assert.Equal(t, chat.CodeUnauthorized, chat.ErrorCode(err), "deleted")
	assert.Equal(t, chat.CodeUnauthorized, chat.ErrorCode(st.Delete(ctx, s1.Token)), "deleted twice")

	require.NoError(t, st.RevokeAll(ctx, ada))
	require.NoError(t, st.RevokeAll(ctx, ada), "revoking again is no error, so that a saga step can be retried")
	_, err = st.User(ctx, s2.Token)
	assert.Equal(t, chat.CodeUnauthorized, chat.ErrorCode(err), "revoked")
	got, err = st.User(ctx, sb.Token)
	require.NoError(t, err, "another user's session lives on")
	assert.Equal(t, bob, got)

	// Redis down: never 401, since the token may be good.
	down, err := redisstore.NewSessionStore(deadRedis(t), prefix, redisstore.SessionStoreOptions{})
	require.NoError(t, err)
	_, err = down.User(ctx, sb.Token)
	assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(err))
	_, err = down.Create(ctx, ada)
	assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(err))
	assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(down.Delete(ctx, sb.Token)))
	assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(down.RevokeAll(ctx, ada)))
	_, err = down.User(ctx, "malformed")
	assert.Equal(t, chat.CodeUnauthorized, chat.ErrorCode(err), "a malformed token needs no Redis to be refused")
}

func TestLoginLimiter_CountsFailuresPerAccountAndClientUnderThePrefix(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	ctx := context.Background()
	l, err := redisstore.NewLoginLimiter(client, prefix, time.Minute, 2, 3)
	require.NoError(t, err)

	wait, err := l.Check(ctx, "username:ada", "10.0.0.1")
	require.NoError(t, err)
	assert.Zero(t, wait)
	require.NoError(t, l.Failed(ctx, "username:ada", "10.0.0.1"))
	require.NoError(t, l.Failed(ctx, "username:ada", "10.0.0.2"))
	wait, err = l.Check(ctx, "username:ada", "10.0.0.3")
	require.NoError(t, err)
	assert.True(t, wait > 0 && wait <= time.Minute, "the account's limit: wait %s, until the window ends", wait)

	wait, err = l.Check(ctx, "username:bob", "10.0.0.1")
	require.NoError(t, err)
	assert.Zero(t, wait, "another account, a client with one failure")
	require.NoError(t, l.Failed(ctx, "username:bob", "10.0.0.1"))
	require.NoError(t, l.Failed(ctx, "username:cyd", "10.0.0.1"))
	wait, err = l.Check(ctx, "username:dee", "10.0.0.1")
	require.NoError(t, err)
	assert.Positive(t, wait, "the client's limit: 3 failures")

	keys, err := client.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		assert.Regexp(t, `^`+prefix+`loginfail:(account:[0-9a-f]{64}|client:10\.0\.0\.[0-9]):\d{8}T\d{6}Z$`, k)
	}

	down, err := redisstore.NewLoginLimiter(deadRedis(t), prefix, time.Minute, 2, 3)
	require.NoError(t, err)
	_, err = down.Check(ctx, "username:ada", "10.0.0.1")
	assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(err), "fails closed: no login without the count")
	assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(down.Failed(ctx, "username:ada", "10.0.0.1")))
}

func TestXPBoard_IncrPageRemove(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	ctx := context.Background()
	b, err := redisstore.NewXPBoard(client, prefix)
	require.NoError(t, err)
	ada, bob := uuid.New(), uuid.New()

	total, err := b.Incr(ctx, ada, 10)
	require.NoError(t, err)
	assert.EqualValues(t, 10, total)
	total, err = b.Incr(ctx, ada, 5)
	require.NoError(t, err)
	assert.EqualValues(t, 15, total)
	_, err = b.Incr(ctx, bob, 20)
	require.NoError(t, err)

	entries, next, week, err := b.Page(ctx, "", 1)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, chat.BoardEntry{UserID: bob, XP: 20, Rank: 0}, entries[0])
	assert.Equal(t, time.Monday, week.Weekday())
	assert.True(t, !week.After(time.Now()) && time.Since(week) < 7*24*time.Hour, "week starts %s", week)
	entries, _, _, err = b.Page(ctx, next, 10)
	require.NoError(t, err)
	assert.Equal(t, []chat.BoardEntry{{UserID: ada, XP: 15, Rank: 1}}, entries)

	_, _, _, err = b.Page(ctx, "not a cursor!", 10)
	assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(err))

	require.NoError(t, b.Remove(ctx, ada))
	require.NoError(t, b.Remove(ctx, ada), "removing an absent member is no error, so that a saga step can be retried")
	entries, _, _, err = b.Page(ctx, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []chat.BoardEntry{{UserID: bob, XP: 20, Rank: 0}}, entries)

	keys, err := client.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, prefix+"leaderboard:xp:"+week.Format("20060102T150405Z"), keys[0])
	ttl, err := client.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.True(t, ttl > 7*24*time.Hour && ttl <= 14*24*time.Hour, "kept a week after its week ends: %s", ttl)
}
