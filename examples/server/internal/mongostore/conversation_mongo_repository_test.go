package mongostore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/mongostore"
	"github.com/polystore/polystore/internal/servicetest"
)

func newRepo(t *testing.T) *mongostore.ConversationRepository {
	t.Helper()
	repo, err := mongostore.NewConversationRepository(servicetest.Mongo(t))
	require.NoError(t, err)
	require.NoError(t, repo.EnsureIndexes(context.Background()))
	require.NoError(t, repo.EnsureIndexes(context.Background()), "EnsureIndexes is idempotent")
	return repo
}

func TestConversationRepository_CreateConversation_WithPresetIDIsIdempotent(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	user := uuid.New()
	id := repo.NewConversationID()

	c := &chat.Conversation{ID: id, UserID: user, Title: chat.WelcomeTitle, Messages: []chat.Message{{Role: chat.RoleAssistant, Content: "Hello", SentAt: time.Now()}}}
	require.NoError(t, repo.CreateConversation(ctx, c))
	again := &chat.Conversation{ID: id, UserID: user, Title: chat.WelcomeTitle}
	require.NoError(t, repo.CreateConversation(ctx, again), "a retried insert of the same id is not an error")

	page, err := repo.ListConversations(ctx, user, 10, "")
	require.NoError(t, err)
	require.Len(t, page.Conversations, 1, "inserted once")
	assert.Equal(t, id, page.Conversations[0].ID)
	assert.Equal(t, user, page.Conversations[0].UserID)
	require.Len(t, page.Conversations[0].Messages, 1)
}

func TestConversationRepository_AppendMessage(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	c := &chat.Conversation{UserID: uuid.New(), Title: "Verbs"}
	require.NoError(t, repo.CreateConversation(ctx, c))
	require.NotEmpty(t, c.ID)

	operatorShaped := `{"$ne": ""}`
	got, err := repo.AppendMessage(ctx, c.ID, chat.Message{Role: chat.RoleUser, Content: operatorShaped, SentAt: time.Now()})
	require.NoError(t, err)
	require.Len(t, got.Messages, 1)
	assert.Equal(t, operatorShaped, got.Messages[0].Content, "stored as text")
	assert.False(t, got.UpdatedAt.Before(c.UpdatedAt))

	_, err = repo.AppendMessage(ctx, "not-an-id", chat.Message{Role: chat.RoleUser, Content: "x"})
	assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(err))
	_, err = repo.AppendMessage(ctx, repo.NewConversationID(), chat.Message{Role: chat.RoleUser, Content: "x"})
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
}

func TestConversationRepository_ListConversations_PagesMostRecentlyUpdatedFirst(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	user := uuid.New()
	require.NoError(t, repo.CreateConversation(ctx, &chat.Conversation{UserID: uuid.New(), Title: "someone else's"}))
	var (
		ids  []string
		last time.Time
	)
	for i := range 5 {
		c := &chat.Conversation{UserID: user, Title: fmt.Sprint("c", i)}
		require.NoError(t, repo.CreateConversation(ctx, c))
		ids = append(ids, c.ID)
		last = c.UpdatedAt
	}
	// Timestamps are stored to the millisecond: let the clock pass the last
	// creation, or the bump could tie with it and lose on the _id tiebreak.
	require.Eventually(t, func() bool { return time.Now().Truncate(time.Millisecond).After(last) },
		time.Second, 100*time.Microsecond)
	// Touch the first: it becomes the most recently updated.
	_, err := repo.AppendMessage(ctx, ids[0], chat.Message{Role: chat.RoleUser, Content: "bump", SentAt: time.Now()})
	require.NoError(t, err)

	var seen []string
	cursor := ""
	for range 10 {
		page, err := repo.ListConversations(ctx, user, 2, cursor)
		require.NoError(t, err)
		for _, c := range page.Conversations {
			seen = append(seen, c.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	require.Len(t, seen, 5, "every conversation once, none of another user's")
	assert.Equal(t, ids[0], seen[0], "the updated one comes first")
	assert.ElementsMatch(t, ids, seen)

	_, err = repo.ListConversations(ctx, user, 2, "bogus-cursor")
	assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(err))
}

func TestConversationRepository_DeleteUserConversations(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	user, other := uuid.New(), uuid.New()
	for _, u := range []uuid.UUID{user, user, other} {
		require.NoError(t, repo.CreateConversation(ctx, &chat.Conversation{UserID: u, Title: "t"}))
	}
	require.NoError(t, repo.DeleteUserConversations(ctx, user))

	page, err := repo.ListConversations(ctx, user, 10, "")
	require.NoError(t, err)
	assert.Empty(t, page.Conversations)
	page, err = repo.ListConversations(ctx, other, 10, "")
	require.NoError(t, err)
	assert.Len(t, page.Conversations, 1, "another user's conversations stay")

	assert.NoError(t, repo.DeleteConversation(ctx, repo.NewConversationID()), "deleting a missing conversation is fine")
}
