package pgrepo_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

// account exercises every tag option: a generated key, generated and
// readonly columns, a version and a soft-delete column.
type account struct {
	ID        int64      `db:"id,pk,generated"`
	Email     string     `db:"email"`
	Name      string     `db:"name"`
	Balance   int64      `db:"balance"`
	TeamID    *int64     `db:"team_id"`
	Note      *string    `db:"note"`
	CreatedAt time.Time  `db:"created_at,generated"`
	NameUpper string     `db:"name_upper,readonly"`
	Version   int        `db:"version,version"`
	DeletedAt *time.Time `db:"deleted_at,softdelete"`
	Scratch   string     `db:"-"`
}

// team has no version and no soft delete: plain UPDATE and DELETE.
type team struct {
	ID   int64  `db:"id,pk,generated"`
	Name string `db:"name"`
}

// tag has a key the caller chooses, for Upsert on the primary key.
type tag struct {
	Name string `db:"name,pk"`
	Uses int    `db:"uses"`
}

const schema = `
CREATE TABLE teams (
	id   bigserial PRIMARY KEY,
	name text NOT NULL
);
CREATE TABLE accounts (
	id         bigserial PRIMARY KEY,
	email      text NOT NULL CONSTRAINT accounts_email_key UNIQUE,
	name       text NOT NULL,
	balance    bigint NOT NULL DEFAULT 0 CONSTRAINT accounts_balance_check CHECK (balance >= 0),
	team_id    bigint CONSTRAINT accounts_team_id_fkey REFERENCES teams (id),
	note       text,
	created_at timestamptz NOT NULL DEFAULT now(),
	name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
	version    integer NOT NULL,
	deleted_at timestamptz
);
CREATE TABLE tags (
	name text PRIMARY KEY,
	uses integer NOT NULL
);
`

// fixture is a fresh database with the test schema and its repositories.
type fixture struct {
	pool     *pgxpool.Pool
	accounts *pgrepo.Repository[account, int64]
	teams    *pgrepo.Repository[team, int64]
	tags     *pgrepo.Repository[tag, string]
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool := servicetest.Postgres(t)
	_, err := pool.Exec(context.Background(), schema)
	require.NoError(t, err)
	accounts, err := pgrepo.New[account, int64]("accounts")
	require.NoError(t, err)
	teams, err := pgrepo.New[team, int64]("teams")
	require.NoError(t, err)
	tags, err := pgrepo.New[tag, string]("tags")
	require.NoError(t, err)
	return &fixture{pool: pool, accounts: accounts, teams: teams, tags: tags}
}

// insertAccount inserts an account with the given email and name.
func (f *fixture) insertAccount(t *testing.T, email, name string) account {
	t.Helper()
	a := account{Email: email, Name: name}
	require.NoError(t, f.accounts.Insert(context.Background(), f.pool, &a))
	return a
}

// countingDB counts the statements that reach the server, to prove that
// bad input is rejected before any SQL runs.
type countingDB struct {
	pgrepo.DB
	calls int
}

func (c *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.calls++
	return c.DB.Exec(ctx, sql, args...)
}

func (c *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.calls++
	return c.DB.Query(ctx, sql, args...)
}

func (c *countingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.calls++
	return c.DB.QueryRow(ctx, sql, args...)
}

func (c *countingDB) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	c.calls++
	return c.DB.CopyFrom(ctx, table, columns, src)
}

func ptr[V any](v V) *V { return &v }
