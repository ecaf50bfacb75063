package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/redisrepo"
)

// sessionData is what a session keeps besides its user (redisrepo keeps
// the subject): nothing yet. A real service would keep a device name or
// the login's time here, never the password.
type sessionData struct{}

// SessionStore is the chat.SessionStore on a redisrepo.SessionStore:
// sessions under prefix + "session:", keyed by the SHA-256 of their token
// (the token itself is never stored), one index of sessions per user for
// RevokeAll.
type SessionStore struct {
	sessions *redisrepo.SessionStore[sessionData]
	timeout  time.Duration
}

var _ chat.SessionStore = (*SessionStore)(nil)

// SessionStoreOptions tunes a SessionStore. The zero value means defaults.
type SessionStoreOptions struct {
	// IdleTimeout ends a session unused for this long. Default: 30 minutes.
	IdleTimeout time.Duration
	// Lifetime ends every session this long after login, used or not.
	// Default: 24 hours.
	Lifetime time.Duration
	// Timeout bounds each Redis call: a Redis that does not answer must
	// not hold every authenticated request. Default: 1s.
	Timeout time.Duration
}

// NewSessionStore returns the session store on client, keys under prefix.
func NewSessionStore(client redis.UniversalClient, prefix string, opts SessionStoreOptions) (*SessionStore, error) {
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	s, err := redisrepo.NewSessionStore[sessionData](client, redisrepo.SessionOptions{
		Prefix: prefix + "session:", IdleTimeout: opts.IdleTimeout, Lifetime: opts.Lifetime,
	})
	if err != nil {
		return nil, err
	}
	return &SessionStore{sessions: s, timeout: opts.Timeout}, nil
}

// Create starts a session of userID.
func (s *SessionStore) Create(ctx context.Context, userID uuid.UUID) (*chat.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	token, err := s.sessions.Create(ctx, userID.String(), sessionData{})
	if err != nil {
		return nil, chat.Wrap(chat.CodeUnavailable, err, "the session store (Redis) is unavailable")
	}
	// Read it back for its deadline, which Redis's clock set: one more
	// round trip at login only.
	got, err := s.sessions.Get(ctx, token)
	if err != nil {
		return nil, sessionErr(err)
	}
	return &chat.Session{Token: token, UserID: userID, ExpiresAt: got.ExpiresAt.UTC()}, nil
}

// User returns the user of the live session token, renewing its idle
// timeout.
func (s *SessionStore) User(ctx context.Context, token string) (uuid.UUID, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	got, err := s.sessions.Get(ctx, token)
	if err != nil {
		return uuid.UUID{}, sessionErr(err)
	}
	id, err := uuid.Parse(got.Subject)
	if err != nil {
		return uuid.UUID{}, chat.Wrap(chat.CodeUnauthorized, err, "invalid session")
	}
	return id, nil
}

// Delete ends the session token.
func (s *SessionStore) Delete(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return sessionErr(s.sessions.Delete(ctx, token))
}

// RevokeAll ends every session of userID.
func (s *SessionStore) RevokeAll(ctx context.Context, userID uuid.UUID) error {
	if _, err := s.sessions.RevokeAll(ctx, userID.String()); err != nil {
		return chat.Wrap(chat.CodeUnavailable, err, "the session store (Redis) is unavailable")
	}
	return nil
}

// sessionErr maps redisrepo's errors: not found (unknown, expired, revoked,
// malformed) is the client's 401, anything else a 503, since a Redis
// outage says nothing about the token.
func sessionErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redisrepo.ErrNotFound):
		return chat.Wrap(chat.CodeUnauthorized, err, "invalid or expired session")
	}
	return chat.Wrap(chat.CodeUnavailable, err, "the session store (Redis) is unavailable")
}
