package pgrepo

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// VersionTable is the table where Migrate records the schema version: the
// one the tern command-line tool uses too, so both can manage one database.
const VersionTable = "public.schema_version"

// Migrate brings the database's schema up to date with the migrations in
// fsys: files at its root named 001_name.sql, 002_other.sql, ... (numbered
// from 1 without gaps) in tern's format, applied in order, each in its own
// transaction, skipping those the version table says are done. Use fs.Sub
// when they sit in a directory of an embed.FS.
//
// Several instances may call Migrate at once: tern holds a PostgreSQL
// advisory lock (pg_advisory_lock, per database) on one connection while
// it reads the version and migrates, so the others wait and then find
// nothing to do. A migration that fails is rolled back and Migrate returns
// its error (a *migrate.MigrationPgError that wraps the *pgconn.PgError);
// the migrations before it stay applied. A nil pool or fsys gives
// ErrInvalid.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	if pool == nil || fsys == nil {
		return fmt.Errorf("%w: pgrepo.Migrate: nil pool or fsys", ErrInvalid)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgrepo: migrate: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), VersionTable)
	if err != nil {
		return fmt.Errorf("pgrepo: migrate: %w", err)
	}
	if err := m.LoadMigrations(fsys); err != nil {
		return fmt.Errorf("pgrepo: migrate: loading migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("pgrepo: migrate: %w", err)
	}
	return nil
}
