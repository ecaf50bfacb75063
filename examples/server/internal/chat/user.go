package chat

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
)

// User is a learner. Its profile (every field but PasswordHash) is what the
// API returns and what the profile cache keeps.
type User struct {
	ID           uuid.UUID `json:"id"`
	Username     string    `json:"username"`
	Email        string    `json:"email"`
	PasswordHash string    `json:"-"` // never serialised: not in responses, not in the cache
	Language     string    `json:"language"`
	Level        string    `json:"level"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Version grows by one with every update; clients send it back in
	// If-Match to update (optimistic locking).
	Version int64 `json:"version"`
}

// NewUser is a registration request.
type NewUser struct {
	Username string `json:"username"`
	Email    string `json:"email"`
	Password string `json:"password"`
	Language string `json:"language"`
	Level    string `json:"level"` // optional: DefaultLevel
}

// UserPatch is a partial update: nil fields are left as they are.
type UserPatch struct {
	Email    *string `json:"email,omitempty"`
	Language *string `json:"language,omitempty"`
	Level    *string `json:"level,omitempty"`
}

// Precondition is the condition an update must meet, from If-Match: any
// current version (If-Match: *) or one of Versions. The zero value allows
// nothing, as a list of weak entity tags does (they never match strongly).
type Precondition struct {
	Any      bool    `json:"any,omitempty"`
	Versions []int64 `json:"versions,omitempty"`
}

// Allows reports whether a user at version meets p.
func (p Precondition) Allows(version int64) bool {
	return p.Any || slices.Contains(p.Versions, version)
}

// Registration is the outcome of a registration: the new user and the
// welcome conversation created for them.
type Registration struct {
	User                  *User  `json:"user"`
	WelcomeConversationID string `json:"welcome_conversation_id"`
}

// UserService is what the API offers on users.
type UserService interface {
	// Register validates nu, creates the user and their welcome
	// conversation, and drops any cached "not found" of its id. CodeInvalid, CodeConflict,
	// CodeUnavailable (nothing was done, or the outcome is unknown), or a
	// *Pending error when the registration is logged for recovery to finish.
	Register(ctx context.Context, nu NewUser) (*Registration, error)
	// User returns a user's profile. CodeNotFound.
	User(ctx context.Context, id uuid.UUID) (*User, error)
	// UpdateUser applies p if the user's current version meets cond.
	// CodeInvalid, CodeNotFound (before cond is looked at),
	// CodePreconditionFailed, CodeConflict, CodeUnavailable, *Pending.
	UpdateUser(ctx context.Context, id uuid.UUID, cond Precondition, p UserPatch) (*User, error)
	// DeleteUser removes the user, their conversations and cached profile.
	// CodeNotFound, CodeUnavailable, *Pending.
	DeleteUser(ctx context.Context, id uuid.UUID) error
	// Operation returns the registration, update or deletion with this id,
	// the one a *Pending error named. CodeInvalid, CodeNotFound.
	Operation(ctx context.Context, id string) (*Operation, error)
}

// UserStore keeps users (PostgreSQL).
type UserStore interface {
	// CreateUser inserts u with the ID it carries and sets its timestamps
	// and version. CodeConflict when the username or email is taken.
	CreateUser(ctx context.Context, u *User) error
	// FindUser returns the user with id. CodeNotFound.
	FindUser(ctx context.Context, id uuid.UUID) (*User, error)
	// UpdateUser applies p if the user's current version meets cond.
	// CodeNotFound, CodePreconditionFailed, CodeConflict.
	UpdateUser(ctx context.Context, id uuid.UUID, cond Precondition, p UserPatch) (*User, error)
	// DeleteUser removes the user. CodeNotFound.
	DeleteUser(ctx context.Context, id uuid.UUID) error
	// FindLogin returns the id and password hash of the user with this
	// username, or this email when username is "". CodeNotFound.
	FindLogin(ctx context.Context, username, email string) (uuid.UUID, string, error)
	// Usernames returns the usernames of those of ids that exist, in one
	// read.
	Usernames(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]string, error)
}

// ProfileCache keeps user profiles in front of the UserStore (Redis).
type ProfileCache interface {
	// Profile returns the cached profile of id, or calls load on a miss and
	// caches its result, a CodeNotFound error included, for a short time.
	Profile(ctx context.Context, id uuid.UUID, load func(context.Context) (*User, error)) (*User, error)
	// Invalidate drops the cached profile of id, so that the next Profile
	// loads it again.
	Invalidate(ctx context.Context, id uuid.UUID) error
}
