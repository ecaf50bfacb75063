package chat

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Message roles.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleSystem    = "system"
)

// WelcomeTitle is the title of the conversation every new user starts with.
const WelcomeTitle = "Welcome"

// Conversation is a chat between a learner and the tutor.
type Conversation struct {
	ID        string    `json:"id"` // 24 hexadecimal digits (a MongoDB ObjectID)
	UserID    uuid.UUID `json:"user_id"`
	Title     string    `json:"title"`
	Messages  []Message `json:"messages"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Message is one turn of a conversation.
type Message struct {
	Role    string    `json:"role"`
	Content string    `json:"content"`
	SentAt  time.Time `json:"sent_at"`
}

// NewConversation is a request to start a conversation.
type NewConversation struct {
	Title string `json:"title"`
}

// NewMessage is a request to append a message.
type NewMessage struct {
	Role    string `json:"role"` // optional: RoleUser
	Content string `json:"content"`
}

// ConversationPage is one page of a user's conversations, most recently
// updated first. NextCursor is empty on the last page.
type ConversationPage struct {
	Conversations []*Conversation `json:"conversations"`
	NextCursor    string          `json:"next_cursor,omitempty"`
}

// ConversationService is what the API offers on conversations.
type ConversationService interface {
	// CreateConversation starts a conversation for a user.
	// CodeInvalid, CodeNotFound (no such user).
	CreateConversation(ctx context.Context, userID uuid.UUID, nc NewConversation) (*Conversation, error)
	// AppendMessage adds a message to a conversation of userID's and
	// returns it. CodeInvalid, CodeNotFound, CodeForbidden (the
	// conversation is another user's).
	AppendMessage(ctx context.Context, userID uuid.UUID, conversationID string, nm NewMessage) (*Conversation, error)
	// Conversations lists a user's conversations, most recently updated
	// first, limit at a time, from cursor ("" for the first page).
	// CodeInvalid (bad limit or cursor), CodeNotFound (no such user).
	Conversations(ctx context.Context, userID uuid.UUID, limit int, cursor string) (*ConversationPage, error)
}

// ConversationStore keeps conversations (MongoDB).
type ConversationStore interface {
	// CreateConversation inserts c. An empty c.ID gets a new one; a c.ID
	// that already exists is left as it is and is not an error, so that a
	// retried saga step inserts once.
	CreateConversation(ctx context.Context, c *Conversation) error
	// Conversation returns one conversation. CodeInvalid (malformed id),
	// CodeNotFound.
	Conversation(ctx context.Context, id string) (*Conversation, error)
	// AppendMessage pushes m to the conversation and returns it.
	// CodeInvalid (malformed id), CodeNotFound.
	AppendMessage(ctx context.Context, id string, m Message) (*Conversation, error)
	// ListConversations returns a page of a user's conversations.
	// CodeInvalid (bad cursor).
	ListConversations(ctx context.Context, userID uuid.UUID, limit int, cursor string) (*ConversationPage, error)
	// DeleteConversation removes one conversation; a missing one is not an
	// error (compensations run again after a crash).
	DeleteConversation(ctx context.Context, id string) error
	// DeleteUserConversations removes all of a user's conversations.
	DeleteUserConversations(ctx context.Context, userID uuid.UUID) error
	// NewConversationID returns a fresh id, so that a saga can record it
	// before the insert.
	NewConversationID() string
}
