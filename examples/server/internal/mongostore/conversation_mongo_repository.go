package mongostore

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/examples/server/internal/chat"
)

// CollectionName is the conversations collection.
const CollectionName = "conversations"

// MaxMessages is how many messages a conversation keeps: appending beyond
// it drops the oldest, so that a document stays far below MongoDB's 16 MiB
// limit (500 messages of at most 4,000 characters).
const MaxMessages = 500

// conversationDoc is a conversations document: the adapter's own type, so
// the domain carries no BSON tags.
type conversationDoc struct {
	ID        bson.ObjectID `bson:"_id"`
	UserID    string        `bson:"user_id"` // the UUID's canonical string: readable in the shell
	Title     string        `bson:"title"`
	Messages  []messageDoc  `bson:"messages"`
	CreatedAt time.Time     `bson:"created_at" docrepo:"created"`
	UpdatedAt time.Time     `bson:"updated_at" docrepo:"updated"`
	Version   int64         `bson:"version" docrepo:"version"`
}

type messageDoc struct {
	Role    string    `bson:"role"`
	Content string    `bson:"content"`
	SentAt  time.Time `bson:"sent_at"`
}

func (d *conversationDoc) conversation() *chat.Conversation {
	c := &chat.Conversation{
		ID: d.ID.Hex(), Title: d.Title, Messages: make([]chat.Message, len(d.Messages)),
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	c.UserID, _ = uuid.Parse(d.UserID) // written by us from a uuid.UUID
	for i, m := range d.Messages {
		c.Messages[i] = chat.Message{Role: m.Role, Content: m.Content, SentAt: m.SentAt}
	}
	return c
}

// ConversationRepository is the chat.ConversationStore on MongoDB.
type ConversationRepository struct {
	conversations *docrepo.Repository[conversationDoc, bson.ObjectID]
}

var _ chat.ConversationStore = (*ConversationRepository)(nil)

// NewConversationRepository returns the conversations repository in db.
// Its spans and metrics go to the global OpenTelemetry providers.
func NewConversationRepository(db *mongo.Database) (*ConversationRepository, error) {
	return NewConversationRepositoryWithProviders(db, nil, nil)
}

// NewConversationRepositoryWithProviders is NewConversationRepository
// whose spans (docrepo.<Method> conversations) and metrics go to tp and mp
// (nil: the global ones).
func NewConversationRepositoryWithProviders(db *mongo.Database, tp trace.TracerProvider, mp metric.MeterProvider) (*ConversationRepository, error) {
	repo, err := docrepo.New[conversationDoc, bson.ObjectID](db.Collection(CollectionName), docrepo.Options{
		MaxPageSize: chat.MaxPageLimit, TracerProvider: tp, MeterProvider: mp,
	})
	if err != nil {
		return nil, err
	}
	return &ConversationRepository{conversations: repo}, nil
}

// EnsureIndexes creates the index that serves a user's conversations, most
// recently updated first (and the deletion of all of them). Idempotent.
func (s *ConversationRepository) EnsureIndexes(ctx context.Context) error {
	_, err := s.conversations.EnsureIndexes(ctx, docrepo.IndexSpec{
		Name: "user_updated",
		Keys: []docrepo.IndexKey{
			{Field: "user_id"},
			{Field: "updated_at", Kind: docrepo.Descending},
			{Field: "_id", Kind: docrepo.Descending},
		},
	})
	return err
}

// NewConversationID returns a fresh ObjectID in hex.
func (s *ConversationRepository) NewConversationID() string { return bson.NewObjectID().Hex() }

// CreateConversation inserts c, with c.ID when set. An id that exists
// already is taken as this very insert done before (a retried saga step).
func (s *ConversationRepository) CreateConversation(ctx context.Context, c *chat.Conversation) error {
	// BSON keeps milliseconds: truncate now, so what is returned is what a
	// read gives back.
	doc := conversationDoc{UserID: c.UserID.String(), Title: c.Title, Messages: []messageDoc{}, CreatedAt: c.CreatedAt.UTC().Truncate(time.Millisecond)}
	if c.ID != "" {
		id, err := docrepo.ParseID(c.ID)
		if err != nil {
			return translate(err)
		}
		doc.ID = id
	}
	for _, m := range c.Messages {
		doc.Messages = append(doc.Messages, messageDoc{Role: m.Role, Content: m.Content, SentAt: m.SentAt.UTC().Truncate(time.Millisecond)})
	}
	err := s.conversations.Insert(ctx, &doc)
	if errors.Is(err, docrepo.ErrDuplicate) && c.ID != "" {
		return nil
	}
	if err != nil {
		return translate(err)
	}
	*c = *doc.conversation()
	return nil
}

// Conversation returns the conversation with id. CodeInvalid (malformed id),
// CodeNotFound.
func (s *ConversationRepository) Conversation(ctx context.Context, id string) (*chat.Conversation, error) {
	oid, err := docrepo.ParseID(id)
	if err != nil {
		return nil, translate(err)
	}
	doc, err := s.conversations.Get(ctx, oid)
	if err != nil {
		return nil, translate(err)
	}
	return doc.conversation(), nil
}

// AppendMessage pushes m, keeping the last MaxMessages, and returns the
// conversation as it is then.
func (s *ConversationRepository) AppendMessage(ctx context.Context, id string, m chat.Message) (*chat.Conversation, error) {
	oid, err := docrepo.ParseID(id)
	if err != nil {
		return nil, translate(err)
	}
	u := docrepo.NewUpdate().PushSlice("messages", -MaxMessages, messageDoc{Role: m.Role, Content: m.Content, SentAt: m.SentAt})
	if err := s.conversations.Update(ctx, oid, u); err != nil {
		return nil, translate(err)
	}
	doc, err := s.conversations.Get(ctx, oid)
	if err != nil {
		return nil, translate(err)
	}
	return doc.conversation(), nil
}

// ListConversations returns a page of a user's conversations, most
// recently updated first, after cursor.
func (s *ConversationRepository) ListConversations(ctx context.Context, userID uuid.UUID, limit int, cursor string) (*chat.ConversationPage, error) {
	page, err := s.conversations.Page(ctx, docrepo.PageRequest{
		Filter: docrepo.Eq("user_id", userID.String()),
		SortBy: "updated_at",
		Desc:   true,
		Limit:  limit,
		Cursor: cursor,
	})
	if err != nil {
		if errors.Is(err, docrepo.ErrInvalid) {
			return nil, chat.Wrap(chat.CodeInvalid, err, "cursor: not one this server gave")
		}
		return nil, translate(err)
	}
	out := &chat.ConversationPage{Conversations: make([]*chat.Conversation, len(page.Items)), NextCursor: page.Next}
	for i := range page.Items {
		out.Conversations[i] = page.Items[i].conversation()
	}
	return out, nil
}

// DeleteConversation removes one conversation; a missing one is fine.
func (s *ConversationRepository) DeleteConversation(ctx context.Context, id string) error {
	oid, err := docrepo.ParseID(id)
	if err != nil {
		return translate(err)
	}
	if err := s.conversations.Delete(ctx, oid); err != nil && !errors.Is(err, docrepo.ErrNotFound) {
		return translate(err)
	}
	return nil
}

// DeleteUserConversations removes all of a user's conversations.
func (s *ConversationRepository) DeleteUserConversations(ctx context.Context, userID uuid.UUID) error {
	_, err := s.conversations.DeleteMany(ctx, docrepo.Eq("user_id", userID.String()))
	return translate(err)
}

// translate maps docrepo's sentinels to application errors, keeping them as
// the cause; anything else is a store failure.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, docrepo.ErrNotFound):
		return chat.Wrap(chat.CodeNotFound, err, "conversation not found")
	case errors.Is(err, docrepo.ErrInvalidID):
		return chat.Wrap(chat.CodeInvalid, err, "conversation id: must be 24 hexadecimal digits")
	case errors.Is(err, docrepo.ErrInvalid):
		// Input is validated before it gets here: this is a bug.
		return chat.Wrap(chat.CodeInternal, err, "conversation store refused the request")
	}
	return chat.Wrap(chat.CodeUnavailable, err, "MongoDB is unavailable")
}
