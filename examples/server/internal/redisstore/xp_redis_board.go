package redisstore

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/redisrepo"
)

// XPBoard is the chat.Board on a weekly redisrepo.Leaderboard: one sorted
// set per week (Monday 00:00 UTC) under prefix + "leaderboard:xp:" + the
// week's start, members the user ids, kept one week after the week ends.
type XPBoard struct {
	board   *redisrepo.Leaderboard[string]
	timeout time.Duration
}

var _ chat.Board = (*XPBoard)(nil)

// NewXPBoard returns the weekly XP board on client, keys under prefix.
func NewXPBoard(client redis.UniversalClient, prefix string) (*XPBoard, error) {
	b, err := redisrepo.NewLeaderboard[string](client, "xp", redisrepo.LeaderboardOptions{
		Prefix: prefix + "leaderboard:", Window: redisrepo.Weekly,
	})
	if err != nil {
		return nil, err
	}
	return &XPBoard{board: b, timeout: time.Second}, nil
}

// Incr adds points to userID's total this week.
func (b *XPBoard) Incr(ctx context.Context, userID uuid.UUID, points int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	total, err := b.board.Incr(ctx, userID.String(), float64(points))
	if err != nil {
		return 0, chat.Wrap(chat.CodeUnavailable, err, "the leaderboard (Redis) is unavailable; the points may or may not have been added")
	}
	return int64(math.Round(total)), nil
}

// Page returns a page of this week's board.
func (b *XPBoard) Page(ctx context.Context, cursor string, limit int) ([]chat.BoardEntry, string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	start := weekStart(time.Now())
	p, err := b.board.Page(ctx, cursor, limit)
	switch {
	case errors.Is(err, redisrepo.ErrInvalid):
		return nil, "", start, chat.Wrap(chat.CodeInvalid, err, "cursor: not one this API gave out")
	case err != nil:
		return nil, "", start, chat.Wrap(chat.CodeUnavailable, err, "the leaderboard (Redis) is unavailable")
	}
	out := make([]chat.BoardEntry, 0, len(p.Entries))
	for _, e := range p.Entries {
		id, err := uuid.Parse(e.Member)
		if err != nil {
			continue // not written by this server
		}
		out = append(out, chat.BoardEntry{UserID: id, XP: int64(math.Round(e.Score)), Rank: e.Rank})
	}
	return out, p.Next, start, nil
}

// Remove takes userID off this week's and last week's boards.
func (b *XPBoard) Remove(ctx context.Context, userID uuid.UUID) error {
	now := time.Now()
	for _, board := range []*redisrepo.Leaderboard[string]{b.board, b.board.At(now.Add(-7 * 24 * time.Hour))} {
		err := board.Remove(ctx, userID.String())
		if err != nil && !errors.Is(err, redisrepo.ErrNotFound) {
			return chat.Wrap(chat.CodeUnavailable, err, "the leaderboard (Redis) is unavailable")
		}
	}
	return nil
}

// weekStart is the start of redisrepo's Weekly window holding t.
func weekStart(t time.Time) time.Time {
	const week = 7 * 24 * time.Hour
	return windowOrigin.Add(t.Sub(windowOrigin) / week * week)
}
