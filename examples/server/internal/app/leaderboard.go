package app

import (
	"context"

	"github.com/google/uuid"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// Leaderboard is the chat.LeaderboardService: XP on a weekly board in
// Redis, usernames from PostgreSQL.
type Leaderboard struct {
	users chat.UserStore
	board chat.Board
}

var _ chat.LeaderboardService = (*Leaderboard)(nil)

// NewLeaderboard returns the XP service.
func NewLeaderboard(users chat.UserStore, board chat.Board) *Leaderboard {
	return &Leaderboard{users: users, board: board}
}

// AddXP adds points to the user's weekly total. It reads the user's row
// first, so that a session that outlived its user's deletion (the saga
// revokes sessions right after deleting the row) cannot put them back on
// the board.
func (s *Leaderboard) AddXP(ctx context.Context, userID uuid.UUID, g chat.XPGain) (*chat.XPTotal, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if _, err := s.users.FindUser(ctx, userID); err != nil {
		return nil, err
	}
	total, err := s.board.Incr(ctx, userID, g.Points)
	if err != nil {
		return nil, err
	}
	return &chat.XPTotal{UserID: userID, WeeklyXP: total}, nil
}

// Leaderboard returns a page of this week's board with usernames, read in
// one query for the page. A user deleted while still on the board (the
// delete saga's step that removes them not run yet) is left out: the page
// then holds fewer entries than limit, its ranks keep a gap, and the
// cursor still goes on from the right place.
func (s *Leaderboard) Leaderboard(ctx context.Context, limit int, cursor string) (*chat.LeaderboardPage, error) {
	if limit == 0 {
		limit = 10
	}
	if limit < 1 || limit > chat.MaxPageLimit {
		return nil, chat.Errorf(chat.CodeInvalid, "limit: must be a number from 1 to %d", chat.MaxPageLimit)
	}
	entries, next, start, err := s.board.Page(ctx, cursor, limit)
	if err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(entries))
	for i, e := range entries {
		ids[i] = e.UserID
	}
	names, err := s.users.Usernames(ctx, ids)
	if err != nil {
		return nil, err
	}
	page := &chat.LeaderboardPage{WeekStart: start, Entries: []chat.LeaderboardEntry{}, NextCursor: next}
	for _, e := range entries {
		name, ok := names[e.UserID]
		if !ok {
			continue
		}
		page.Entries = append(page.Entries, chat.LeaderboardEntry{Rank: e.Rank + 1, UserID: e.UserID, Username: name, XP: e.XP})
	}
	return page, nil
}
