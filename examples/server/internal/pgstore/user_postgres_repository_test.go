package pgstore_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/pgstore"
	"github.com/polystore/polystore/internal/servicetest"
)

func newRepo(t *testing.T) *pgstore.UserRepository {
	t.Helper()
	pool := servicetest.Postgres(t)
	require.NoError(t, pgstore.Migrate(context.Background(), pool))
	require.NoError(t, pgstore.Migrate(context.Background(), pool), "a second Migrate has nothing to do")
	repo, err := pgstore.NewUserRepository(pool)
	require.NoError(t, err)
	return repo
}

func newUser(name string) *chat.User {
	return &chat.User{ID: uuid.New(), Username: name, Email: name + "@example.org", PasswordHash: "hash", Language: "fr", Level: "B1"}
}

func TestUserRepository_CreateUser_FillsTimestampsAndVersion(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	u := newUser("ada")
	require.NoError(t, repo.CreateUser(ctx, u))
	assert.EqualValues(t, 1, u.Version)
	assert.False(t, u.CreatedAt.IsZero())

	got, err := repo.FindUser(ctx, u.ID)
	require.NoError(t, err)
	assert.Equal(t, u.Username, got.Username)
	assert.Equal(t, "hash", got.PasswordHash)
}

func TestUserRepository_CreateUser_DuplicateReturnsConflictNamingField(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	require.NoError(t, repo.CreateUser(ctx, newUser("ada")))

	sameName := newUser("ada")
	sameName.Email = "other@example.org"
	err := repo.CreateUser(ctx, sameName)
	assert.Equal(t, chat.CodeConflict, chat.ErrorCode(err))
	assert.Contains(t, chat.ErrorMessage(err), "username")

	sameEmail := newUser("bob")
	sameEmail.Email = "ada@example.org"
	err = repo.CreateUser(ctx, sameEmail)
	assert.Equal(t, chat.CodeConflict, chat.ErrorCode(err))
	assert.Contains(t, chat.ErrorMessage(err), "email")
}

func TestUserRepository_FindUser_UnknownReturnsNotFound(t *testing.T) {
	repo := newRepo(t)
	_, err := repo.FindUser(context.Background(), uuid.New())
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
}

func TestUserRepository_UpdateUser_StaleVersionReturnsPreconditionFailed(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	u := newUser("ada")
	require.NoError(t, repo.CreateUser(ctx, u))
	level := "C1"

	updated, err := repo.UpdateUser(ctx, u.ID, 1, chat.UserPatch{Level: &level})
	require.NoError(t, err)
	assert.EqualValues(t, 2, updated.Version)
	assert.Equal(t, "C1", updated.Level)
	assert.False(t, updated.UpdatedAt.Before(u.UpdatedAt))

	_, err = repo.UpdateUser(ctx, u.ID, 1, chat.UserPatch{Level: &level})
	assert.Equal(t, chat.CodePreconditionFailed, chat.ErrorCode(err))

	_, err = repo.UpdateUser(ctx, uuid.New(), 1, chat.UserPatch{Level: &level})
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
}

func TestUserRepository_DeleteUser(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	u := newUser("ada")
	require.NoError(t, repo.CreateUser(ctx, u))

	require.NoError(t, repo.DeleteUser(ctx, u.ID))
	_, err := repo.FindUser(ctx, u.ID)
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(repo.DeleteUser(ctx, u.ID)))
}
