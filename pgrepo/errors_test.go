package pgrepo_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/pgrepo"
)

// scoreRow has columns whose types reject values: NOT NULL, integer,
// varchar(5), numeric(5,2).
type scoreRow struct {
	ID      int64   `db:"id,pk,generated"`
	Name    *string `db:"name"`
	Score   int64   `db:"score"`
	Code    *string `db:"code"`
	Amount  float64 `db:"amount"`
	Version int     `db:"version,version"`
}

const scoreSchema = `CREATE TABLE scores (
	id      bigserial PRIMARY KEY,
	name    text NOT NULL UNIQUE,
	score   integer NOT NULL,
	code    varchar(5),
	amount  numeric(5,2) NOT NULL DEFAULT 0,
	version integer NOT NULL
)`

func TestRepository_ValueErrorsWrapErrInvalidAndNameTheColumn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, scoreSchema)
	require.NoError(t, err)
	scores, err := pgrepo.New[scoreRow, int64]("scores")
	require.NoError(t, err)
	existing := scoreRow{Name: ptr("kept"), Score: 1}
	require.NoError(t, scores.Insert(ctx, f.pool, &existing))

	tests := []struct {
		name     string
		write    func() error
		sentinel error
		code     string // SQLSTATE of the *pgconn.PgError; "" when pgx rejects the value itself
		want     string // in the message
	}{
		{"Insert NULL into NOT NULL", func() error { return scores.Insert(ctx, f.pool, &scoreRow{Score: 1}) },
			pgrepo.ErrNotNull, "23502", `column "name"`},
		{"Update NULL into NOT NULL", func() error { v := existing; v.Name = nil; return scores.Update(ctx, f.pool, &v) },
			pgrepo.ErrNotNull, "23502", `column "name"`},
		{"Patch NULL into NOT NULL", func() error {
			_, err := scores.Patch(ctx, f.pool, existing.ID, map[string]any{"name": nil})
			return err
		},
			pgrepo.ErrNotNull, "23502", `column "name"`},
		{"Upsert NULL into NOT NULL", func() error { return scores.Upsert(ctx, f.pool, &scoreRow{Score: 1}, "name") },
			pgrepo.ErrNotNull, "23502", `column "name"`},
		{"InsertMany NULL into NOT NULL", func() error {
			_, err := scores.InsertMany(ctx, f.pool, []scoreRow{{Name: ptr("a"), Score: 1}, {Score: 2}})
			return err
		}, pgrepo.ErrNotNull, "23502", `column "name"`},
		{"Patch text that is not an integer", func() error {
			_, err := scores.Patch(ctx, f.pool, existing.ID, map[string]any{"name": "n", "score": "x"})
			return err
		}, pgrepo.ErrInvalidValue, "22P02", `column "score"`},
		{"List comparing an integer column with text", func() error {
			_, err := scores.List(ctx, f.pool, pgrepo.Query{Where: pgrepo.Eq("score", "x")})
			return err
		}, pgrepo.ErrInvalidValue, "22P02", `column "score"`},
		{"Count comparing an integer column with text", func() error {
			_, err := scores.Count(ctx, f.pool, pgrepo.And(pgrepo.Eq("name", "kept"), pgrepo.In("score", 1, "x")))
			return err
		}, pgrepo.ErrInvalidValue, "22P02", `column "score"`},
		{"Patch text out of the integer range", func() error {
			_, err := scores.Patch(ctx, f.pool, existing.ID, map[string]any{"score": "99999999999"})
			return err
		}, pgrepo.ErrInvalidValue, "22003", `column "score"`},
		{"Insert a number too large for numeric(5,2)", func() error {
			return scores.Insert(ctx, f.pool, &scoreRow{Name: ptr("n"), Score: 1, Amount: 12345.6})
		}, pgrepo.ErrInvalidValue, "22003", "does not say which column"},
		{"InsertMany a number too large for numeric(5,2)", func() error {
			_, err := scores.InsertMany(ctx, f.pool, []scoreRow{{Name: ptr("a"), Score: 1}, {Name: ptr("b"), Score: 1, Amount: 12345.6}})
			return err
		}, pgrepo.ErrInvalidValue, "22003", `column "amount" in row 2`},
		{"Insert a string too long for varchar(5)", func() error {
			return scores.Insert(ctx, f.pool, &scoreRow{Name: ptr("n"), Score: 1, Code: ptr("toolong")})
		}, pgrepo.ErrInvalidValue, "22001", "does not say which column"},
		{"Update a string too long for varchar(5)", func() error {
			v := existing
			v.Code = ptr("toolong")
			return scores.Update(ctx, f.pool, &v)
		}, pgrepo.ErrInvalidValue, "22001", "does not say which column"},
		{"Upsert a string too long for varchar(5)", func() error {
			return scores.Upsert(ctx, f.pool, &scoreRow{Name: ptr("kept"), Score: 1, Code: ptr("toolong")}, "name")
		}, pgrepo.ErrInvalidValue, "22001", "does not say which column"},
		{"InsertMany a string too long for varchar(5)", func() error {
			_, err := scores.InsertMany(ctx, f.pool, []scoreRow{{Name: ptr("a"), Score: 1, Code: ptr("toolong")}})
			return err
		}, pgrepo.ErrInvalidValue, "22001", `column "code" in row 1`},
		{"Insert an int64 beyond an integer column (pgx refuses it)", func() error {
			return scores.Insert(ctx, f.pool, &scoreRow{Name: ptr("n"), Score: 1 << 40})
		}, pgrepo.ErrInvalidValue, "", `column "score" (not sent to the server)`},
		{"InsertMany a value pgx cannot encode", func() error {
			_, err := scores.InsertMany(ctx, f.pool, []scoreRow{{Name: ptr("a"), Score: 1 << 40}})
			return err
		}, pgrepo.ErrInvalidValue, "57014", "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.write()

			require.Error(t, err)
			assert.ErrorIs(t, err, tt.sentinel)
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.Contains(t, err.Error(), tt.want)
			var pgErr *pgconn.PgError
			if tt.code != "" {
				require.ErrorAs(t, err, &pgErr, "the server's error stays reachable")
				assert.Equal(t, tt.code, pgErr.Code)
			} else {
				assert.NotErrorAs(t, err, &pgErr)
			}

			got, err := scores.List(ctx, f.pool, pgrepo.Query{})
			require.NoError(t, err)
			assert.Equal(t, []scoreRow{existing}, got.Items, "nothing was written")
		})
	}
}

func TestRepository_NotNullDomainReturnsErrNotNullWithoutAColumn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `CREATE DOMAIN required_text AS text NOT NULL;
		CREATE TABLE labels (id bigserial PRIMARY KEY, name required_text)`)
	require.NoError(t, err)
	type label struct {
		ID   int64   `db:"id,pk,generated"`
		Name *string `db:"name"`
	}
	labels, err := pgrepo.New[label, int64]("labels")
	require.NoError(t, err)

	err = labels.Insert(ctx, f.pool, &label{})

	assert.ErrorIs(t, err, pgrepo.ErrNotNull)
	assert.ErrorIs(t, err, pgrepo.ErrInvalid)
	assert.ErrorContains(t, err, "a column PostgreSQL does not name")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "23502", pgErr.Code)
}
