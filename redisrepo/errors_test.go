package redisrepo_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/polystore/polystore/redisrepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRedisDown_EveryOperationWrapsErrRedisWithTheDriverError: nothing
// listens on port 1, so every call fails in the dial; each error must wrap
// ErrRedis, keep the *net.OpError reachable, and say what took effect.
func TestRedisDown_EveryOperationWrapsErrRedisWithTheDriverError(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()

	sessions, err := redisrepo.NewSessionStore[profile](client, redisrepo.SessionOptions{})
	require.NoError(t, err)
	board, err := redisrepo.NewLeaderboard[string](client, "xp", redisrepo.LeaderboardOptions{Window: redisrepo.Weekly})
	require.NoError(t, err)
	counters, err := redisrepo.NewCounters(client, redisrepo.CounterOptions{})
	require.NoError(t, err)
	locker, err := redisrepo.NewLocker(client, redisrepo.LockOptions{})
	require.NoError(t, err)
	wellFormed := "0123abcd." + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

	for name, err := range map[string]error{
		"SessionStore.Create":    func() error { _, err := sessions.Create(ctx, "u", profile{}); return err }(),
		"SessionStore.Get":       func() error { _, err := sessions.Get(ctx, wellFormed); return err }(),
		"SessionStore.Update":    sessions.Update(ctx, wellFormed, profile{}),
		"SessionStore.Delete":    sessions.Delete(ctx, wellFormed),
		"SessionStore.RevokeAll": func() error { _, err := sessions.RevokeAll(ctx, "u"); return err }(),
		"Leaderboard.Add":        board.Add(ctx, "ada", 1),
		"Leaderboard.Incr":       func() error { _, err := board.Incr(ctx, "ada", 1); return err }(),
		"Leaderboard.Top":        func() error { _, err := board.Top(ctx, 10); return err }(),
		"Leaderboard.Page":       func() error { _, err := board.Page(ctx, "", 10); return err }(),
		"Leaderboard.Around":     func() error { _, err := board.Around(ctx, "ada", 2); return err }(),
		"Leaderboard.Rank":       func() error { _, err := board.Rank(ctx, "ada"); return err }(),
		"Leaderboard.Score":      func() error { _, err := board.Score(ctx, "ada"); return err }(),
		"Leaderboard.Remove":     board.Remove(ctx, "ada"),
		"Leaderboard.Len":        func() error { _, err := board.Len(ctx); return err }(),
		"Counters.Incr":          func() error { _, err := counters.Incr(ctx, "n", 1); return err }(),
		"Counters.Get":           func() error { _, err := counters.Get(ctx, "n"); return err }(),
		"Counters.GetMany":       func() error { _, err := counters.GetMany(ctx, "n", "m"); return err }(),
		"Locker.TryLock":         func() error { _, err := locker.TryLock(ctx, "job", time.Second); return err }(),
		"Locker.Lock":            func() error { _, err := locker.Lock(ctx, "job", time.Second); return err }(),
	} {
		assert.ErrorIs(t, err, redisrepo.ErrRedis, name)
		var opErr *net.OpError
		assert.True(t, errors.As(err, &opErr), "%s: the dial error is reachable: %v", name, err)
		assert.NotErrorIs(t, err, redisrepo.ErrNotFound, name)
		if err != nil {
			assert.Regexp(t, `nothing changed|may or may not have taken effect|may have been renewed`, err.Error(), name)
		}
	}
}
