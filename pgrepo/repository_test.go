package pgrepo_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

func TestRepository_Insert_FillsGeneratedReadonlyAndVersionColumns(t *testing.T) {
	f := newFixture(t)
	before := time.Now().Add(-time.Minute)

	a := account{Email: "ada@example.com", Name: "Ada", Balance: 10, Note: ptr("hi"), Scratch: "kept"}
	require.NoError(t, f.accounts.Insert(context.Background(), f.pool, &a))

	assert.NotZero(t, a.ID)
	assert.True(t, a.CreatedAt.After(before), "created_at comes back from the database")
	assert.Equal(t, "ADA", a.NameUpper, "the readonly generated column comes back")
	assert.Equal(t, 1, a.Version)
	assert.Equal(t, "kept", a.Scratch, `db:"-" fields are left alone`)

	b := account{Email: "bob@example.com", Name: "Bob"}
	require.NoError(t, f.accounts.Insert(context.Background(), f.pool, &b))
	assert.Greater(t, b.ID, a.ID)
}

func TestRepository_Get_ReturnsTheRow(t *testing.T) {
	f := newFixture(t)
	a := f.insertAccount(t, "ada@example.com", "Ada")

	got, err := f.accounts.Get(context.Background(), f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, a.ID, got.ID)
	assert.Equal(t, "Ada", got.Name)
	assert.Equal(t, "ADA", got.NameUpper)
	assert.True(t, a.CreatedAt.Equal(got.CreatedAt))
	assert.Nil(t, got.TeamID)
	assert.Nil(t, got.DeletedAt)
}

func TestRepository_Get_MissingRowReturnsErrNotFound(t *testing.T) {
	f := newFixture(t)

	_, err := f.accounts.Get(context.Background(), f.pool, 42)

	require.Error(t, err)
	assert.ErrorIs(t, err, pgrepo.ErrNotFound)
	assert.ErrorIs(t, err, pgx.ErrNoRows, "the driver's error stays reachable")
	assert.Contains(t, err.Error(), "id=42")
	// The behaviour cacherepo relies on without importing pgrepo.
	var nf interface{ NotFound() bool }
	require.True(t, errors.As(err, &nf))
	assert.True(t, nf.NotFound())
}

func TestRepository_Insert_ConstraintViolationsReturnSentinels(t *testing.T) {
	f := newFixture(t)
	f.insertAccount(t, "taken@example.com", "Taken")

	tests := []struct {
		name       string
		account    account
		sentinel   error
		code       string
		constraint string
	}{
		{"unique", account{Email: "taken@example.com", Name: "x"}, pgrepo.ErrDuplicate, "23505", "accounts_email_key"},
		{"foreign key", account{Email: "fk@example.com", Name: "x", TeamID: ptr[int64](999)}, pgrepo.ErrForeignKey, "23503", "accounts_team_id_fkey"},
		{"check", account{Email: "neg@example.com", Name: "x", Balance: -1}, pgrepo.ErrCheck, "23514", "accounts_balance_check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.account
			err := f.accounts.Insert(context.Background(), f.pool, &a)

			require.Error(t, err)
			assert.ErrorIs(t, err, tt.sentinel)
			assert.Contains(t, err.Error(), tt.constraint, "the message names the constraint")
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			assert.Equal(t, tt.code, pgErr.Code)
			assert.Equal(t, tt.constraint, pgErr.ConstraintName)
			assert.Zero(t, a.ID, "nothing was filled back")
		})
	}
	n, err := f.accounts.Count(context.Background(), f.pool, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "no rejected row was written")
}

func TestRepository_NilValueReturnsErrInvalid(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	assert.ErrorIs(t, f.accounts.Insert(ctx, f.pool, nil), pgrepo.ErrInvalid)
	assert.ErrorIs(t, f.accounts.Update(ctx, f.pool, nil), pgrepo.ErrInvalid)
	assert.ErrorIs(t, f.accounts.Upsert(ctx, f.pool, nil, "email"), pgrepo.ErrInvalid)
}

func TestRepository_Update_WritesRowAndIncrementsVersion(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")
	created := a.CreatedAt

	a.Name = "Ada Lovelace"
	a.Balance = 99
	a.CreatedAt = time.Time{} // generated: Update must not write it
	require.NoError(t, f.accounts.Update(ctx, f.pool, &a))

	assert.Equal(t, 2, a.Version)
	assert.Equal(t, "ADA LOVELACE", a.NameUpper, "readonly columns come back")
	got, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, "Ada Lovelace", got.Name)
	assert.Equal(t, int64(99), got.Balance)
	assert.Equal(t, 2, got.Version)
	assert.True(t, created.Equal(got.CreatedAt))
}

func TestRepository_Update_StaleVersionReturnsErrConflict(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")
	stale := a

	a.Name = "first"
	require.NoError(t, f.accounts.Update(ctx, f.pool, &a))
	stale.Name = "second"
	err := f.accounts.Update(ctx, f.pool, &stale)

	assert.ErrorIs(t, err, pgrepo.ErrConflict)
	assert.Equal(t, 1, stale.Version, "a failed update leaves the value as it was")
	got, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, "first", got.Name)
}

func TestRepository_Update_MissingRowReturnsErrNotFound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	err := f.accounts.Update(ctx, f.pool, &account{ID: 404, Email: "x", Name: "x", Version: 1})
	assert.ErrorIs(t, err, pgrepo.ErrNotFound, "with a version column")

	err = f.teams.Update(ctx, f.pool, &team{ID: 404, Name: "x"})
	assert.ErrorIs(t, err, pgrepo.ErrNotFound, "without a version column")
}

func TestRepository_Update_WithoutVersionWritesRow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tm := team{Name: "red"}
	require.NoError(t, f.teams.Insert(ctx, f.pool, &tm))

	tm.Name = "blue"
	require.NoError(t, f.teams.Update(ctx, f.pool, &tm))

	got, err := f.teams.Get(ctx, f.pool, tm.ID)
	require.NoError(t, err)
	assert.Equal(t, "blue", got.Name)
}

func TestRepository_Update_ConstraintViolationReturnsSentinel(t *testing.T) {
	f := newFixture(t)
	f.insertAccount(t, "taken@example.com", "Taken")
	a := f.insertAccount(t, "ada@example.com", "Ada")

	a.Email = "taken@example.com"
	err := f.accounts.Update(context.Background(), f.pool, &a)

	assert.ErrorIs(t, err, pgrepo.ErrDuplicate)
	assert.Equal(t, 1, a.Version)
}

// TestRepository_Update_ConcurrentWritersLoseNoUpdate runs 50 goroutines
// that each add 1 to one row's balance with read-modify-write, retrying on
// ErrConflict: every version has exactly one winner and no increment is lost.
func TestRepository_Update_ConcurrentWritersLoseNoUpdate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "counter@example.com", "Counter")

	const writers = 50
	var (
		mu      sync.Mutex
		winners = map[int]int{} // version written -> how many writers wrote it
		wg      sync.WaitGroup
	)
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cur, err := f.accounts.Get(ctx, f.pool, a.ID)
				if err != nil {
					errs <- err
					return
				}
				cur.Balance++
				err = f.accounts.Update(ctx, f.pool, &cur)
				if errors.Is(err, pgrepo.ErrConflict) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				winners[cur.Version]++
				mu.Unlock()
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	got, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(writers), got.Balance, "no lost update")
	assert.Equal(t, writers+1, got.Version)
	require.Len(t, winners, writers)
	for v := 2; v <= writers+1; v++ {
		assert.Equal(t, 1, winners[v], "version %d has exactly one winner", v)
	}
}

func TestRepository_Patch_SetsOnlyNamedColumns(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")

	got, err := f.accounts.Patch(ctx, f.pool, a.ID, map[string]any{"name": "Grace", "note": "n", "balance": 5})
	require.NoError(t, err)

	assert.Equal(t, "Grace", got.Name)
	assert.Equal(t, "GRACE", got.NameUpper)
	assert.Equal(t, ptr("n"), got.Note)
	assert.Equal(t, int64(5), got.Balance)
	assert.Equal(t, "ada@example.com", got.Email, "unnamed columns keep their value")
	assert.Equal(t, 2, got.Version, "Patch increments the version")
	reread, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, got, reread)

	got, err = f.accounts.Patch(ctx, f.pool, a.ID, map[string]any{"note": nil})
	require.NoError(t, err)
	assert.Nil(t, got.Note, "nil writes NULL")
}

func TestRepository_Patch_BadColumnReturnsErrInvalidColumnBeforeSQL(t *testing.T) {
	f := newFixture(t)
	a := f.insertAccount(t, "ada@example.com", "Ada")

	for _, col := range []string{"nope", `name" = 'x'; --`, "id", "created_at", "name_upper", "version", "deleted_at", "Name"} {
		t.Run(col, func(t *testing.T) {
			db := &countingDB{DB: f.pool}
			_, err := f.accounts.Patch(context.Background(), db, a.ID, map[string]any{"name": "ok", col: "x"})
			assert.ErrorIs(t, err, pgrepo.ErrInvalidColumn)
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.Zero(t, db.calls, "no SQL ran")
		})
	}
}

func TestRepository_Patch_Errors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")

	_, err := f.accounts.Patch(ctx, f.pool, 404, map[string]any{"name": "x"})
	assert.ErrorIs(t, err, pgrepo.ErrNotFound)

	_, err = f.accounts.Patch(ctx, f.pool, a.ID, nil)
	assert.ErrorIs(t, err, pgrepo.ErrInvalid)

	_, err = f.accounts.Patch(ctx, f.pool, a.ID, map[string]any{"balance": -5})
	assert.ErrorIs(t, err, pgrepo.ErrCheck)
}

func TestRepository_Delete_SoftDeleteHidesTheRow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "gone@example.com", "Gone")
	kept := f.insertAccount(t, "kept@example.com", "Kept")

	require.NoError(t, f.accounts.Delete(ctx, f.pool, a.ID))

	_, err := f.accounts.Get(ctx, f.pool, a.ID)
	assert.ErrorIs(t, err, pgrepo.ErrNotFound, "Get")
	ok, err := f.accounts.Exists(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.False(t, ok, "Exists")
	n, err := f.accounts.Count(ctx, f.pool, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "Count")
	page, err := f.accounts.List(ctx, f.pool, pgrepo.Query{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1, "List")
	assert.Equal(t, kept.ID, page.Items[0].ID)
	assert.ErrorIs(t, f.accounts.Update(ctx, f.pool, &a), pgrepo.ErrNotFound, "Update")
	_, err = f.accounts.Patch(ctx, f.pool, a.ID, map[string]any{"name": "x"})
	assert.ErrorIs(t, err, pgrepo.ErrNotFound, "Patch")
	assert.ErrorIs(t, f.accounts.Delete(ctx, f.pool, a.ID), pgrepo.ErrNotFound, "Delete again")

	var deletedAt *time.Time
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT deleted_at FROM accounts WHERE id = $1", a.ID).Scan(&deletedAt))
	assert.NotNil(t, deletedAt, "the row is still in the table, marked")
}

func TestRepository_Delete_HardDeletesWithoutSoftDeleteColumn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tm := team{Name: "red"}
	require.NoError(t, f.teams.Insert(ctx, f.pool, &tm))

	require.NoError(t, f.teams.Delete(ctx, f.pool, tm.ID))

	var n int
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT count(*) FROM teams").Scan(&n))
	assert.Zero(t, n)
	assert.ErrorIs(t, f.teams.Delete(ctx, f.pool, tm.ID), pgrepo.ErrNotFound)
}

func TestRepository_Delete_ReferencedRowReturnsErrForeignKey(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tm := team{Name: "red"}
	require.NoError(t, f.teams.Insert(ctx, f.pool, &tm))
	a := account{Email: "a@example.com", Name: "A", TeamID: &tm.ID}
	require.NoError(t, f.accounts.Insert(ctx, f.pool, &a))

	err := f.teams.Delete(ctx, f.pool, tm.ID)

	assert.ErrorIs(t, err, pgrepo.ErrForeignKey)
	ok, err := f.teams.Exists(ctx, f.pool, tm.ID)
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestRepository_Upsert_InsertsThenUpdatesOnConflict(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	first := account{Email: "ada@example.com", Name: "Ada", Balance: 1}
	require.NoError(t, f.accounts.Upsert(ctx, f.pool, &first, "email"))
	assert.NotZero(t, first.ID)
	assert.Equal(t, 1, first.Version)

	second := account{Email: "ada@example.com", Name: "Ada L", Balance: 2}
	require.NoError(t, f.accounts.Upsert(ctx, f.pool, &second, "email"))
	assert.Equal(t, first.ID, second.ID, "the existing row was updated")
	assert.Equal(t, 2, second.Version)
	assert.Equal(t, "ADA L", second.NameUpper)

	got, err := f.accounts.Get(ctx, f.pool, first.ID)
	require.NoError(t, err)
	assert.Equal(t, "Ada L", got.Name)
	assert.Equal(t, int64(2), got.Balance)
	n, err := f.accounts.Count(ctx, f.pool, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

func TestRepository_Upsert_RevivesSoftDeletedRow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")
	require.NoError(t, f.accounts.Delete(ctx, f.pool, a.ID))

	again := account{Email: "ada@example.com", Name: "Ada again"}
	require.NoError(t, f.accounts.Upsert(ctx, f.pool, &again, "email"))

	got, err := f.accounts.Get(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, "Ada again", got.Name)
}

func TestRepository_Upsert_OnPrimaryKeyByDefault(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	require.NoError(t, f.tags.Upsert(ctx, f.pool, &tag{Name: "go", Uses: 1}))
	require.NoError(t, f.tags.Upsert(ctx, f.pool, &tag{Name: "go", Uses: 7}))

	got, err := f.tags.Get(ctx, f.pool, "go")
	require.NoError(t, err)
	assert.Equal(t, 7, got.Uses)
}

func TestRepository_Upsert_BadConflictTargetIsRejected(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	db := &countingDB{DB: f.pool}

	err := f.accounts.Upsert(ctx, db, &account{Email: "x", Name: "x"}, "email; DROP TABLE accounts")
	assert.ErrorIs(t, err, pgrepo.ErrInvalidColumn)
	_, err = f.pool.Exec(ctx, "CREATE UNIQUE INDEX ON accounts (name, balance)")
	require.NoError(t, err)
	require.NoError(t, f.accounts.Upsert(ctx, f.pool, &account{Email: "y", Name: "y"}, "name", "balance"))
	err = f.accounts.Upsert(ctx, db, &account{Email: "x", Name: "x"}, "name\x00balance")
	assert.ErrorIs(t, err, pgrepo.ErrInvalidColumn, "checked even when a target with the same cache key is cached")
	err = f.accounts.Upsert(ctx, db, &account{Email: "x", Name: "x"})
	assert.ErrorIs(t, err, pgrepo.ErrInvalid, "a generated key cannot be the conflict target")
	assert.Zero(t, db.calls)

	err = f.accounts.Upsert(ctx, f.pool, &account{Email: "x", Name: "x"}, "name")
	var pgErr *pgconn.PgError
	assert.ErrorAs(t, err, &pgErr, "no unique constraint on name: the server's error comes through")
}

func TestRepository_InsertMany_CopiesAllRows(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	vs := []account{
		{Email: "a@example.com", Name: "A", Balance: 1},
		{Email: "b@example.com", Name: "B", Note: ptr("note")},
		{Email: "c@example.com", Name: "C"},
	}

	n, err := f.accounts.InsertMany(ctx, f.pool, vs)
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)

	page, err := f.accounts.List(ctx, f.pool, pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Asc("email")}})
	require.NoError(t, err)
	require.Len(t, page.Items, 3)
	for i, got := range page.Items {
		assert.Equal(t, vs[i].Email, got.Email)
		assert.Equal(t, vs[i].Balance, got.Balance)
		assert.Equal(t, vs[i].Note, got.Note)
		assert.Equal(t, 1, got.Version, "the version starts at 1")
		assert.NotZero(t, got.ID)
	}

	n, err = f.accounts.InsertMany(ctx, f.pool, nil)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestRepository_InsertMany_ConstraintViolationWritesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	vs := []account{
		{Email: "a@example.com", Name: "A"},
		{Email: "b@example.com", Name: "B"},
		{Email: "a@example.com", Name: "A again"},
	}

	n, err := f.accounts.InsertMany(ctx, f.pool, vs)

	assert.ErrorIs(t, err, pgrepo.ErrDuplicate)
	assert.Contains(t, err.Error(), "accounts_email_key")
	assert.Zero(t, n)
	count, err := f.accounts.Count(ctx, f.pool, nil)
	require.NoError(t, err)
	assert.Zero(t, count)
}

func TestRepository_Exists(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.insertAccount(t, "ada@example.com", "Ada")

	ok, err := f.accounts.Exists(ctx, f.pool, a.ID)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = f.accounts.Exists(ctx, f.pool, a.ID+1)
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestRepository_Count_WithPredicate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, name := range []string{"Ada", "Alan", "Bob"} {
		f.insertAccount(t, name+"@example.com", name)
	}

	n, err := f.accounts.Count(ctx, f.pool, pgrepo.Like("name", "A%"))
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)

	_, err = f.accounts.Count(ctx, f.pool, pgrepo.Eq("bogus", 1))
	assert.ErrorIs(t, err, pgrepo.ErrInvalidColumn)
}

// TestRepository_RunsOnPoolConnAndTx runs the same repository on the three
// kinds of DB, and shows that it joins the caller's transaction.
func TestRepository_RunsOnPoolConnAndTx(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	conn, err := f.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	onConn := account{Email: "conn@example.com", Name: "Conn"}
	require.NoError(t, f.accounts.Insert(ctx, conn.Conn(), &onConn))

	var inTx account
	errRollback := errors.New("roll it back")
	err = pgrepo.InTx(ctx, f.pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
		inTx = account{Email: "tx@example.com", Name: "Tx"}
		if err := f.accounts.Insert(ctx, tx, &inTx); err != nil {
			return err
		}
		ok, err := f.accounts.Exists(ctx, tx, inTx.ID)
		if err != nil || !ok {
			return errors.Join(err, errors.New("not visible inside its transaction"))
		}
		return errRollback
	})
	require.ErrorIs(t, err, errRollback)

	ok, err := f.accounts.Exists(ctx, f.pool, onConn.ID)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = f.accounts.Exists(ctx, f.pool, inTx.ID)
	require.NoError(t, err)
	assert.False(t, ok, "the insert was rolled back with the caller's transaction")
}

func TestRepository_CancelledContextReturnsItsError(t *testing.T) {
	pool := servicetest.Postgres(t)
	repo, err := pgrepo.New[team, int64]("teams")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err = repo.Get(ctx, pool, 1)

	assert.ErrorIs(t, err, context.Canceled)
}
