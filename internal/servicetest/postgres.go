package servicetest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

var postgresStore = &store{
	name:   "PostgreSQL",
	envVar: "POSTGRES_URL",
	ping: func(ctx context.Context, url string) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	},
	start: func(ctx context.Context) (string, error) {
		c, err := tcpostgres.Run(ctx, "postgres:16-alpine",
			tcpostgres.WithDatabase("test"),
			tcpostgres.WithUsername("postgres"),
			tcpostgres.WithPassword("postgres"),
			tcpostgres.BasicWaitStrategies(),
		)
		if err != nil {
			return "", err
		}
		return c.ConnectionString(ctx, "sslmode=disable")
	},
}

// PostgresURL creates an empty database for the test on the resolved
// PostgreSQL server and returns a URL that connects to it. The database is
// dropped, closing any connection left open to it, when the test ends.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := postgresStore.resolve(tb)
	name := uniqueName("polystore_test_")

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("servicetest: connecting to %s: %v", base, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("servicetest: creating database %s: %v", name, err)
	}

	tb.Cleanup(func() {
		ctx, cancel := cleanupContext()
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("servicetest: dropping database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("servicetest: dropping database %s: %v", name, err)
		}
	})

	dbURL, err := withDatabase(base, name)
	if err != nil {
		tb.Fatalf("servicetest: %v", err)
	}
	return dbURL
}

// Postgres returns a pool on a new, empty database of its own that is dropped
// when the test ends. The pool is closed before the database is dropped.
func Postgres(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	dbURL := PostgresURL(tb) // registered first, so its cleanup runs after the pool's
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		tb.Fatalf("servicetest: opening a pool on %s: %v", dbURL, err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// withDatabase returns the connection string base with its database set to
// name. It accepts both URL and keyword/value forms, as pgx does.
func withDatabase(base, name string) (string, error) {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			return "", fmt.Errorf("parsing POSTGRES_URL: %w", err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	// In keyword/value form the last setting of a keyword wins.
	return base + " dbname=" + name, nil
}
