package pgstore

import (
	"context"
	"embed"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/polystore/polystore/pgrepo"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate brings the users schema up to date. It is safe when several
// instances start at once (pgrepo.Migrate holds an advisory lock).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return pgrepo.Migrate(ctx, pool, sub)
}
