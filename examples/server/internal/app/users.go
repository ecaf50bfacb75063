package app

import (
	"context"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// Workflows runs the user operations that span stores (package sagas).
type Workflows interface {
	// Register creates u (ID set, password hashed) with a welcome
	// conversation and returns u as stored and the conversation's id.
	Register(ctx context.Context, u *chat.User) (*chat.User, string, error)
	// UpdateUser applies p if the user's version meets cond and drops the
	// cached profile. CodeNotFound, CodePreconditionFailed, CodeConflict.
	UpdateUser(ctx context.Context, id uuid.UUID, cond chat.Precondition, p chat.UserPatch) (*chat.User, error)
	// DeleteUser removes a user and everything of theirs. CodeNotFound.
	DeleteUser(ctx context.Context, id uuid.UUID) error
	// Operation returns the operation a *chat.Pending named.
	Operation(ctx context.Context, id string) (*chat.Operation, error)
}

// Users is the chat.UserService.
type Users struct {
	store      chat.UserStore
	cache      chat.ProfileCache
	workflows  Workflows
	bcryptCost int
}

var _ chat.UserService = (*Users)(nil)

// NewUsers returns the user service. bcryptCost is the cost of password
// hashes (bcrypt.DefaultCost when 0).
func NewUsers(store chat.UserStore, cache chat.ProfileCache, workflows Workflows, bcryptCost int) *Users {
	if bcryptCost == 0 {
		bcryptCost = bcrypt.DefaultCost
	}
	return &Users{store: store, cache: cache, workflows: workflows, bcryptCost: bcryptCost}
}

// Register validates nu, hashes the password and runs the registration.
func (s *Users) Register(ctx context.Context, nu chat.NewUser) (*chat.Registration, error) {
	if err := nu.Validate(); err != nil {
		return nil, err
	}
	hash, err := s.hashPassword(nu.Password)
	if err != nil {
		return nil, err
	}
	u, conversationID, err := s.workflows.Register(ctx, &chat.User{
		ID: uuid.New(), Username: nu.Username, Email: nu.Email, PasswordHash: hash,
		Language: nu.Language, Level: nu.Level,
	})
	if err != nil {
		return nil, err
	}
	return &chat.Registration{User: u, WelcomeConversationID: conversationID}, nil
}

// DeleteUser removes the user, their conversations and cached profile.
func (s *Users) DeleteUser(ctx context.Context, id uuid.UUID) error {
	return s.workflows.DeleteUser(ctx, id)
}

// Operation returns a registration, update or deletion by id, as the saga
// log has it.
func (s *Users) Operation(ctx context.Context, id string) (*chat.Operation, error) {
	return s.workflows.Operation(ctx, id)
}

// User returns a profile through the cache: a miss loads it from the store,
// and an unknown id is cached as not found for a short time, so probing
// random ids does not reach PostgreSQL each time.
func (s *Users) User(ctx context.Context, id uuid.UUID) (*chat.User, error) {
	return s.cache.Profile(ctx, id, func(ctx context.Context) (*chat.User, error) {
		return s.store.FindUser(ctx, id)
	})
}

// UpdateUser applies p if the user's version meets cond, then drops the
// cached profile (a saga: a Redis outage delays the invalidation but never
// loses it).
func (s *Users) UpdateUser(ctx context.Context, id uuid.UUID, cond chat.Precondition, p chat.UserPatch) (*chat.User, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return s.workflows.UpdateUser(ctx, id, cond, p)
}

// hashPassword hashes with bcrypt at the configured cost.
func (s *Users) hashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
	if err != nil {
		return "", chat.Wrap(chat.CodeInternal, err, "hashing the password")
	}
	return string(h), nil
}
