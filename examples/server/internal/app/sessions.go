package app

import (
	"context"
	"crypto/rand"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// Sessions is the chat.SessionService: login with a password, bearer
// tokens in Redis, a limit on failed logins.
type Sessions struct {
	users    chat.UserStore
	sessions chat.SessionStore
	limiter  chat.LoginLimiter // nil: no limit
	// dummyHash is compared against when the account does not exist, so
	// that an unknown account costs the same bcrypt comparison as a wrong
	// password and the answer's time does not tell which accounts exist.
	dummyHash []byte
}

var _ chat.SessionService = (*Sessions)(nil)

// NewSessions returns the session service. bcryptCost must be the cost of
// the stored hashes (the one Users hashes with), so that the dummy hash
// compared for unknown accounts takes as long as a real one. limiter may be
// nil (no limit on failed logins).
func NewSessions(users chat.UserStore, sessions chat.SessionStore, limiter chat.LoginLimiter, bcryptCost int) (*Sessions, error) {
	if bcryptCost == 0 {
		bcryptCost = bcrypt.DefaultCost
	}
	// A random password nobody knows: no input can match the dummy hash.
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), bcryptCost)
	if err != nil {
		return nil, chat.Wrap(chat.CodeInternal, err, "hashing the dummy password")
	}
	return &Sessions{users: users, sessions: sessions, limiter: limiter, dummyHash: dummy}, nil
}

// wrongCredentials is the one answer to an unknown account and to a wrong
// password.
func wrongCredentials() error {
	return chat.Errorf(chat.CodeUnauthorized, "wrong username, email or password")
}

// Login checks the credentials and starts a session:
//
//  1. validation (400, which says nothing about any account);
//  2. the limit on failed logins of this account and of this client (429
//     with the time until the window ends, before any password is compared,
//     so that the right password does not get through either);
//  3. one read of the account's id and hash; an unknown account is
//     compared against the dummy hash of the same cost;
//  4. a failure counts for the account and the client, and answers 401,
//     the same for an unknown account and a wrong password;
//  5. a session in Redis, whose token is returned once.
//
// A store that fails is a 503 at any step: with Redis down no session can
// be created anyway, and counting failures must not be skipped.
func (s *Sessions) Login(ctx context.Context, client string, c chat.Credentials) (*chat.Session, error) {
	username, email := strings.ToLower(c.Username), ""
	switch {
	case c.Username != "" && c.Email != "":
		return nil, chat.Errorf(chat.CodeInvalid, "give username or email, not both")
	case c.Username == "" && c.Email == "":
		return nil, chat.Errorf(chat.CodeInvalid, "username or email: required")
	case c.Username != "":
		if err := chat.ValidateUsername(username); err != nil {
			return nil, err
		}
	default:
		var err error
		if email, err = chat.NormalizeEmail(c.Email); err != nil {
			return nil, err
		}
	}
	if n := len(c.Password); n < chat.PasswordMinLen || n > chat.PasswordMaxLen {
		return nil, chat.Errorf(chat.CodeInvalid, "password: must be %d to %d bytes long", chat.PasswordMinLen, chat.PasswordMaxLen)
	}
	account := "username:" + username
	if username == "" {
		account = "email:" + email
	}
	if s.limiter != nil {
		wait, err := s.limiter.Check(ctx, account, client)
		if err != nil {
			return nil, err
		}
		if wait > 0 {
			e := chat.Errorf(chat.CodeRateLimited, "too many failed logins: try again later")
			e.RetryAfter = wait
			return nil, e
		}
	}

	id, hash, err := s.users.FindLogin(ctx, username, email)
	known := err == nil
	if err != nil && chat.ErrorCode(err) != chat.CodeNotFound {
		return nil, err
	}
	if !known {
		hash = string(s.dummyHash)
	}
	match := bcrypt.CompareHashAndPassword([]byte(hash), []byte(c.Password)) == nil
	if !known || !match {
		if s.limiter != nil {
			if err := s.limiter.Failed(ctx, account, client); err != nil {
				return nil, err
			}
		}
		return nil, wrongCredentials()
	}
	return s.sessions.Create(ctx, id)
}

// Authenticate returns the user of a live session.
func (s *Sessions) Authenticate(ctx context.Context, token string) (uuid.UUID, error) {
	return s.sessions.User(ctx, token)
}

// Logout ends the session of token.
func (s *Sessions) Logout(ctx context.Context, token string) error {
	return s.sessions.Delete(ctx, token)
}
