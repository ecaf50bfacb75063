package pgrepo_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/pgrepo"
)

func TestRepository_PatchVersion_SetsNamedColumnsAtTheVersionInOneRoundTrip(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")
	db := &countingDB{DB: f.pool}

	got, err := f.accounts.PatchVersion(ctx, db, a.ID, int64(a.Version), map[string]any{"name": "Grace", "balance": 5})
	require.NoError(t, err)

	assert.Equal(t, 1, db.calls, "one statement on success")
	assert.Equal(t, "Grace", got.Name)
	assert.Equal(t, "GRACE", got.NameUpper, "the row after the change")
	assert.Equal(t, int64(5), got.Balance)
	assert.Equal(t, "ada@example.com", got.Email, "unnamed columns keep their value")
	assert.Equal(t, 2, got.Version, "the version is incremented")
	reread, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, got, reread)

	got, err = f.accounts.PatchVersion(ctx, f.pool, a.ID, 2, map[string]any{"note": nil})
	require.NoError(t, err)
	assert.Nil(t, got.Note)
	assert.Equal(t, 3, got.Version)
}

func TestRepository_PatchVersion_StaleVersionReturnsErrConflictAndWritesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")
	_, err := f.accounts.Patch(ctx, f.pool, a.ID, map[string]any{"name": "first"})
	require.NoError(t, err)

	_, err = f.accounts.PatchVersion(ctx, f.pool, a.ID, 1, map[string]any{"name": "second"})

	assert.ErrorIs(t, err, pgrepo.ErrConflict)
	assert.NotErrorIs(t, err, pgrepo.ErrNotFound)
	got, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, "first", got.Name)
	assert.Equal(t, 2, got.Version)
}

func TestRepository_PatchVersion_MissingOrDeletedRowReturnsErrNotFound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	gone := f.insertAccount(t, "gone@example.com", "Gone")
	require.NoError(t, f.accounts.Delete(ctx, f.pool, gone.ID))

	for name, id := range map[string]int64{"missing": 404, "soft-deleted": gone.ID} {
		t.Run(name, func(t *testing.T) {
			_, err := f.accounts.PatchVersion(ctx, f.pool, id, 1, map[string]any{"name": "x"})
			assert.ErrorIs(t, err, pgrepo.ErrNotFound)
			assert.NotErrorIs(t, err, pgrepo.ErrConflict)
		})
	}
}

func TestRepository_PatchVersion_BadInputReturnsErrInvalidBeforeSQL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")
	tm := team{Name: "red"}
	require.NoError(t, f.teams.Insert(ctx, f.pool, &tm))

	tests := []struct {
		name string
		call func(db pgrepo.DB) error
		want error
	}{
		{"table without a version column", func(db pgrepo.DB) error {
			_, err := f.teams.PatchVersion(ctx, db, tm.ID, 1, map[string]any{"name": "blue"})
			return err
		}, pgrepo.ErrInvalid},
		{"negative version", func(db pgrepo.DB) error {
			_, err := f.accounts.PatchVersion(ctx, db, a.ID, -1, map[string]any{"name": "x"})
			return err
		}, pgrepo.ErrInvalid},
		{"no changes", func(db pgrepo.DB) error {
			_, err := f.accounts.PatchVersion(ctx, db, a.ID, 1, nil)
			return err
		}, pgrepo.ErrInvalid},
		{"unknown column", func(db pgrepo.DB) error {
			_, err := f.accounts.PatchVersion(ctx, db, a.ID, 1, map[string]any{"name": "x", "nope": 1})
			return err
		}, pgrepo.ErrInvalidColumn},
	}
	for _, col := range []string{"id", "created_at", "name_upper", "version", "deleted_at"} {
		tests = append(tests, struct {
			name string
			call func(db pgrepo.DB) error
			want error
		}{"column " + col + " is not writable", func(db pgrepo.DB) error {
			_, err := f.accounts.PatchVersion(ctx, db, a.ID, 1, map[string]any{col: 1})
			return err
		}, pgrepo.ErrInvalidColumn})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := &countingDB{DB: f.pool}
			err := tt.call(db)
			assert.ErrorIs(t, err, tt.want)
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.Zero(t, db.calls, "no SQL ran")
		})
	}
}

func TestRepository_PatchVersion_ValueErrorsAreErrInvalid(t *testing.T) {
	f := newFixture(t)
	a := f.insertAccount(t, "ada@example.com", "Ada")

	_, err := f.accounts.PatchVersion(context.Background(), f.pool, a.ID, 1, map[string]any{"balance": "x"})
	assert.ErrorIs(t, err, pgrepo.ErrInvalidValue)
	assert.Contains(t, err.Error(), `column "balance"`)
	_, err = f.accounts.PatchVersion(context.Background(), f.pool, a.ID, 1, map[string]any{"name": nil})
	assert.ErrorIs(t, err, pgrepo.ErrNotNull)
	_, err = f.accounts.PatchVersion(context.Background(), f.pool, a.ID, 1, map[string]any{"balance": -1})
	assert.ErrorIs(t, err, pgrepo.ErrCheck)
}

// TestRepository_PatchVersion_ConcurrentPatchesAtOneVersionHaveOneWinner
// starts 50 goroutines that all patch the same row at the version they
// read: exactly one wins, the 49 others get ErrConflict and wrote nothing.
func TestRepository_PatchVersion_ConcurrentPatchesAtOneVersionHaveOneWinner(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "counter@example.com", "Counter")

	const writers = 50
	start := make(chan struct{})
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = f.accounts.PatchVersion(ctx, f.pool, a.ID, 1, map[string]any{"name": fmt.Sprintf("writer %d", i)})
		}()
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "a second winner: %d and %d", winner, i)
			winner = i
			continue
		}
		assert.ErrorIs(t, err, pgrepo.ErrConflict, "writer %d", i)
	}
	require.NotEqual(t, -1, winner, "exactly one writer wins")
	got, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, 2, got.Version, "one write happened")
	assert.Equal(t, fmt.Sprintf("writer %d", winner), got.Name, "the winner's write")
}
