package chat

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Credentials is a login request: a username or an e-mail address (exactly
// one of the two) and the password.
type Credentials struct {
	Username string `json:"username,omitempty"`
	Email    string `json:"email,omitempty"`
	Password string `json:"password"`
}

// Session is what a successful login returns. Token is the bearer token the
// client sends back in Authorization; the server keeps only its hash.
type Session struct {
	Token     string    `json:"token"`
	UserID    uuid.UUID `json:"user_id"`
	ExpiresAt time.Time `json:"expires_at"` // the absolute end; idle sessions end earlier
}

// SessionService is what the API offers on sessions.
type SessionService interface {
	// Login checks c and starts a session. client identifies the caller
	// (its address) for the limit on failed logins. CodeInvalid,
	// CodeUnauthorized (unknown account or wrong password: the same
	// answer, in the same time), CodeRateLimited (with RetryAfter),
	// CodeUnavailable.
	Login(ctx context.Context, client string, c Credentials) (*Session, error)
	// Authenticate returns the user whose session token is.
	// CodeUnauthorized (malformed, unknown, expired or revoked),
	// CodeUnavailable (the session store is down: not the client's fault).
	Authenticate(ctx context.Context, token string) (uuid.UUID, error)
	// Logout ends the session of token. CodeUnauthorized, CodeUnavailable.
	Logout(ctx context.Context, token string) error
}

// SessionStore keeps sessions (Redis), under hashed tokens.
type SessionStore interface {
	// Create starts a session of userID and returns its token.
	Create(ctx context.Context, userID uuid.UUID) (*Session, error)
	// User returns the user of a live session. CodeUnauthorized,
	// CodeUnavailable.
	User(ctx context.Context, token string) (uuid.UUID, error)
	// Delete ends one session. CodeUnauthorized, CodeUnavailable.
	Delete(ctx context.Context, token string) error
	// RevokeAll ends every session of userID; ending none is no error, so
	// that it can be retried.
	RevokeAll(ctx context.Context, userID uuid.UUID) error
}

// LoginLimiter counts failed logins per key (an account, a client) in a
// time window.
type LoginLimiter interface {
	// Check returns how long to wait when any of keys has reached its
	// limit in the current window, and 0 when none has.
	Check(ctx context.Context, account, client string) (time.Duration, error)
	// Failed counts one failed login for the account and the client.
	Failed(ctx context.Context, account, client string) error
}

// XP bounds of one POST /users/{id}/xp.
const (
	XPMin = 1
	XPMax = 1000
)

// XPGain is a request to add points for a finished exercise.
type XPGain struct {
	Points int64 `json:"points"`
}

// Validate checks the points are within XPMin and XPMax.
func (g *XPGain) Validate() error {
	if g.Points < XPMin || g.Points > XPMax {
		return Errorf(CodeInvalid, "points: must be a whole number from %d to %d", XPMin, XPMax)
	}
	return nil
}

// XPTotal is a user's total on this week's board after a gain.
type XPTotal struct {
	UserID   uuid.UUID `json:"user_id"`
	WeeklyXP int64     `json:"weekly_xp"`
}

// LeaderboardEntry is one line of the weekly board. Rank counts from 1.
type LeaderboardEntry struct {
	Rank     int64     `json:"rank"`
	UserID   uuid.UUID `json:"user_id"`
	Username string    `json:"username"`
	XP       int64     `json:"xp"`
}

// LeaderboardPage is one page of the weekly board, highest XP first.
// NextCursor is empty on the last page.
type LeaderboardPage struct {
	WeekStart  time.Time          `json:"week_start"`
	Entries    []LeaderboardEntry `json:"entries"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

// LeaderboardService is what the API offers on XP.
type LeaderboardService interface {
	// AddXP adds g's points to userID's weekly total. CodeInvalid,
	// CodeNotFound, CodeUnavailable.
	AddXP(ctx context.Context, userID uuid.UUID, g XPGain) (*XPTotal, error)
	// Leaderboard returns a page of this week's board. CodeInvalid (bad
	// limit or cursor), CodeUnavailable.
	Leaderboard(ctx context.Context, limit int, cursor string) (*LeaderboardPage, error)
}

// BoardEntry is a line of the board as the store has it: Rank from 0.
type BoardEntry struct {
	UserID uuid.UUID
	XP     int64
	Rank   int64
}

// Board is the weekly XP board (Redis).
type Board interface {
	// Incr adds points to userID's total this week and returns the total.
	Incr(ctx context.Context, userID uuid.UUID, points int64) (int64, error)
	// Page returns up to limit entries after cursor, the next cursor ("" at
	// the end) and the start of the week. CodeInvalid for a bad cursor.
	Page(ctx context.Context, cursor string, limit int) (entries []BoardEntry, next string, weekStart time.Time, err error)
	// Remove takes userID off the board (this week's and last week's);
	// absent is no error, so that it can be retried.
	Remove(ctx context.Context, userID uuid.UUID) error
}
