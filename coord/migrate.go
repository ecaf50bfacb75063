package coord

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable is tern's record of the coord schema version, apart from any
// version table of the application's own migrations.
const versionTable = "coord_schema_version"

// Migrate creates or upgrades coord's tables (coord_saga, coord_barrier) in
// the database of pool. New calls it; call it yourself for a database that
// only holds PgBarrier rows. Concurrent calls from several processes are
// safe: tern serialises them with an advisory lock. Its errors wrap the
// driver's.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("coord: migrate: %w", err)
	}
	defer conn.Release()

	m, err := migrate.NewMigrator(ctx, conn.Conn(), versionTable)
	if err != nil {
		return fmt.Errorf("coord: migrate: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("coord: migrate: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("coord: migrate: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("coord: migrate: %w", err)
	}
	return nil
}
