package app

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// Conversations is the chat.ConversationService.
type Conversations struct {
	users         *Users // to check that a user exists, through the profile cache
	conversations chat.ConversationStore
}

var _ chat.ConversationService = (*Conversations)(nil)

// NewConversations returns the conversation service on store; users answers
// whether a conversation's user exists.
func NewConversations(users *Users, store chat.ConversationStore) *Conversations {
	return &Conversations{users: users, conversations: store}
}

// CreateConversation starts a conversation for an existing user.
func (s *Conversations) CreateConversation(ctx context.Context, userID uuid.UUID, nc chat.NewConversation) (*chat.Conversation, error) {
	if err := nc.Validate(); err != nil {
		return nil, err
	}
	if _, err := s.users.User(ctx, userID); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	c := &chat.Conversation{UserID: userID, Title: nc.Title, Messages: []chat.Message{}, CreatedAt: now, UpdatedAt: now}
	if err := s.conversations.CreateConversation(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// AppendMessage adds a message to a conversation of userID's: it reads the
// conversation's owner first, CodeForbidden when it is someone else.
func (s *Conversations) AppendMessage(ctx context.Context, userID uuid.UUID, id string, nm chat.NewMessage) (*chat.Conversation, error) {
	if err := nm.Validate(); err != nil {
		return nil, err
	}
	c, err := s.conversations.Conversation(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.UserID != userID {
		return nil, chat.Errorf(chat.CodeForbidden, "this conversation is another user's")
	}
	return s.conversations.AppendMessage(ctx, id, chat.Message{Role: nm.Role, Content: nm.Content, SentAt: time.Now().UTC()})
}

// Conversations lists a user's conversations, most recently updated first.
// An unknown user is CodeNotFound rather than an empty list, so a typo in
// an id does not look like a user without conversations.
func (s *Conversations) Conversations(ctx context.Context, userID uuid.UUID, limit int, cursor string) (*chat.ConversationPage, error) {
	limit, err := chat.ValidatePageLimit(limit)
	if err != nil {
		return nil, err
	}
	if _, err := s.users.User(ctx, userID); err != nil {
		return nil, err
	}
	return s.conversations.ListConversations(ctx, userID, limit, cursor)
}
