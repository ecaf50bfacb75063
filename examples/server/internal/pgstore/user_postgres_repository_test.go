package pgstore_test

import (
	"context"
	"sync"
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
	v1 := chat.Precondition{Versions: []int64{1}}

	updated, err := repo.UpdateUser(ctx, u.ID, v1, chat.UserPatch{Level: &level})
	require.NoError(t, err)
	assert.EqualValues(t, 2, updated.Version)
	assert.Equal(t, "C1", updated.Level)
	assert.False(t, updated.UpdatedAt.Before(u.UpdatedAt))

	_, err = repo.UpdateUser(ctx, u.ID, v1, chat.UserPatch{Level: &level})
	assert.Equal(t, chat.CodePreconditionFailed, chat.ErrorCode(err))

	_, err = repo.UpdateUser(ctx, uuid.New(), v1, chat.UserPatch{Level: &level})
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
}

func TestUserRepository_UpdateUser_Preconditions(t *testing.T) {
	repo := newRepo(t)
	ctx := context.Background()
	u := newUser("ada")
	require.NoError(t, repo.CreateUser(ctx, u)) // version 1
	level := "B2"

	tests := []struct {
		name    string
		cond    chat.Precondition
		code    chat.Code // "" for success
		version int64     // the user's version after the call
	}{
		{"any version", chat.Precondition{Any: true}, "", 2},
		{"a list naming the current version", chat.Precondition{Versions: []int64{1, 2, 7}}, "", 3},
		{"a list naming only other versions", chat.Precondition{Versions: []int64{1, 2}}, chat.CodePreconditionFailed, 3},
		{"nothing (weak tags only)", chat.Precondition{}, chat.CodePreconditionFailed, 3},
	}
	for _, tt := range tests {
		_, err := repo.UpdateUser(ctx, u.ID, tt.cond, chat.UserPatch{Level: &level})
		assert.Equal(t, tt.code, chat.ErrorCode(err), tt.name)
		got, err := repo.FindUser(ctx, u.ID)
		require.NoError(t, err)
		assert.Equal(t, tt.version, got.Version, tt.name)
	}
	_, err := repo.UpdateUser(ctx, uuid.New(), chat.Precondition{Any: true}, chat.UserPatch{Level: &level})
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err), "any version of a user that does not exist")
}

func TestUserRepository_UpdateUser_ConcurrentWritersNeverLoseAnUpdate(t *testing.T) {
	const writers = 20
	tests := []struct {
		name      string
		cond      chat.Precondition
		successes int
	}{
		// Every writer read version 1: one wins, the others see its version.
		{"same version", chat.Precondition{Versions: []int64{1}}, 1},
		// "*" holds for each of them in turn: none fails for a concurrent write.
		{"any version", chat.Precondition{Any: true}, writers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newRepo(t)
			ctx := context.Background()
			u := newUser("ada")
			require.NoError(t, repo.CreateUser(ctx, u))

			codes := make([]chat.Code, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					level := []string{"A1", "A2", "B1", "B2", "C1", "C2"}[i%6]
					_, err := repo.UpdateUser(ctx, u.ID, tt.cond, chat.UserPatch{Level: &level})
					codes[i] = chat.ErrorCode(err)
				})
			}
			wg.Wait()
			ok := 0
			for _, c := range codes {
				if c == "" {
					ok++
				} else {
					assert.Equal(t, chat.CodePreconditionFailed, c)
				}
			}
			assert.Equal(t, tt.successes, ok)
			got, err := repo.FindUser(ctx, u.ID)
			require.NoError(t, err)
			assert.EqualValues(t, 1+tt.successes, got.Version, "one version per successful update")
		})
	}
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
