package sagas

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/chat"
)

// registration is the state of a register-user saga, kept as JSON in the
// saga log. PasswordHash is in it only while the insert has not committed,
// and only when the log is sealed (Options.Sealed): the create-welcome-
// conversation step, which runs once the row holds the hash, drops it from
// the state its log record writes. Unsealed, it is never in the log: the
// process that took the registration keeps it in memory (Sagas.hashes).
type registration struct {
	UserID         uuid.UUID `json:"user_id"`
	Username       string    `json:"username"`
	Email          string    `json:"email"`
	PasswordHash   string    `json:"password_hash,omitempty"`
	Language       string    `json:"language"`
	Level          string    `json:"level"`
	ConversationID string    `json:"conversation_id"`
	// Set by the insert step.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version"`
}

func (r *registration) user() *chat.User {
	return &chat.User{
		ID: r.UserID, Username: r.Username, Email: r.Email, PasswordHash: r.PasswordHash,
		Language: r.Language, Level: r.Level, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Version: r.Version,
	}
}

// registerPivot is the index of register-user's pivot step,
// create-welcome-conversation.
const registerPivot = 1

// registerDefinition: insert the user (PostgreSQL, in the step's own
// transaction: exactly once), create the welcome conversation (MongoDB,
// the pivot), then drop any cached profile of the id (Redis, retried until
// done).
func (s *Sagas) registerDefinition() *coord.Definition[registration] {
	return coord.Define(RegisterUserSaga,
		coord.Step[registration]{
			Name: "insert-user",
			TxAction: func(ctx context.Context, tx coord.Tx, r *registration) error {
				u := r.user()
				if u.PasswordHash == "" {
					hash, ok := s.hashes.Load(r.UserID)
					if !ok {
						// Unsealed log, and the process that had the hash
						// is gone: undo, the client registers again.
						return errHashLost
					}
					u.PasswordHash = hash.(string)
				}
				if err := s.users.CreateUserIn(ctx, tx, u); err != nil {
					return err
				}
				r.CreatedAt, r.UpdatedAt, r.Version = u.CreatedAt, u.UpdatedAt, u.Version
				return nil
			},
			TxCompensate: func(ctx context.Context, tx coord.Tx, r *registration) error {
				err := s.users.DeleteUserIn(ctx, tx, r.UserID)
				if chat.ErrorCode(err) == chat.CodeNotFound {
					return nil // the insert never committed
				}
				return err
			},
			Retry:   storeRetry,
			Timeout: stepTimeout,
		},
		coord.Step[registration]{
			Name: "create-welcome-conversation",
			Kind: coord.Pivot,
			Action: func(ctx context.Context, r *registration) error {
				// The insert has committed (this step runs after its log
				// record): the row holds the hash, the log no longer needs
				// it. This step's record writes the state without it.
				r.PasswordHash = ""
				now := time.Now().UTC()
				err := s.conversations.CreateConversation(ctx, &chat.Conversation{
					ID: r.ConversationID, UserID: r.UserID, Title: chat.WelcomeTitle,
					Messages:  []chat.Message{{Role: chat.RoleAssistant, Content: welcomeMessage, SentAt: now}},
					CreatedAt: now, UpdatedAt: now,
				})
				if err != nil {
					// A pivot has no compensation: should the insert have
					// landed before the error (a timeout), remove it here so
					// that the user's compensation leaves no orphan.
					ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stepTimeout)
					defer cancel()
					_ = s.conversations.DeleteConversation(ctx, r.ConversationID)
				}
				return err
			},
			Retry:   storeRetry,
			Timeout: stepTimeout,
		},
		coord.Step[registration]{
			Name: "clear-profile-cache",
			Kind: coord.Retriable,
			// Invalidate, not fill: a 404 cached while the user did not
			// exist yet must go, and a profile read here and written
			// after an update's own invalidation would stay stale for the
			// cache's TTL. The first read loads the row as it is then.
			Action: func(ctx context.Context, r *registration) error {
				return s.cache.Invalidate(ctx, r.UserID)
			},
			Retry:   afterPivotRetry,
			Timeout: stepTimeout,
		},
	)
}

// Register runs the register-user saga for u (whose ID is set and whose
// password is hashed) and returns u as stored, and the id of the welcome
// conversation. CodeConflict when the username or email is taken (nothing
// is left behind); a cache that could not be filled yet is not an error:
// recovery fills it, and reads load from PostgreSQL meanwhile. A
// *chat.Pending when the saga is logged but has not passed its pivot;
// CodeUnavailable when nothing was done or the outcome is unknown (see
// outcome).
func (s *Sagas) Register(ctx context.Context, u *chat.User) (*chat.User, string, error) {
	r := registration{
		UserID: u.ID, Username: u.Username, Email: u.Email,
		Language: u.Language, Level: u.Level, ConversationID: s.conversations.NewConversationID(),
	}
	if s.sealed {
		r.PasswordHash = u.PasswordHash
	} else {
		s.hashes.Store(u.ID, u.PasswordHash)
		defer s.hashes.Delete(u.ID)
	}
	id := RegisterUserSaga + "/" + u.ID.String()
	info, err := s.register.Run(ctx, id, &r)
	// Past the pivot the user and their conversation exist: done for the
	// caller, with a stale cached 404 dropped by recovery if not now.
	if err := s.outcome(RegisterUserSaga, id, u.ID, info, err, registerPivot, true); err != nil {
		return nil, "", err
	}
	stored := r.user()
	stored.PasswordHash = u.PasswordHash
	return stored, r.ConversationID, nil
}

// errHashLost fails the insert of a registration whose password hash is
// neither in its (unsealed) log record nor in this process: the process
// that took the request ended before the insert committed. Not retried: the
// saga compensates, and its operation says so.
var errHashLost = chat.Errorf(chat.CodeInternal,
	"the password hash was kept only by the process that took the registration, which has ended; nothing was changed: register again")
