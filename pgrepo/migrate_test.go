package pgrepo_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

// migrations creates a table, then records in it that the second migration
// ran: a migration applied twice would leave two rows.
var migrations = fstest.MapFS{
	"001_create_runs.sql":  {Data: []byte("CREATE TABLE runs (migration int NOT NULL);\n")},
	"002_record_run.sql":   {Data: []byte("INSERT INTO runs VALUES (2);\n---- create above / drop below ----\nDELETE FROM runs WHERE migration = 2;\n")},
	"003_add_teams.sql":    {Data: []byte("CREATE TABLE teams (id bigserial PRIMARY KEY, name text NOT NULL);\nINSERT INTO runs VALUES (3);\n")},
	"README.md":            {Data: []byte("not a migration")},
	"notes/004_ignore.sql": {Data: []byte("SELECT broken")},
}

func schemaVersion(t *testing.T, pool *pgxpool.Pool) int32 {
	t.Helper()
	var v int32
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT version FROM "+pgrepo.VersionTable).Scan(&v))
	return v
}

func TestMigrate_AppliesPendingMigrationsOnce(t *testing.T) {
	pool := servicetest.Postgres(t)
	ctx := context.Background()

	require.NoError(t, pgrepo.Migrate(ctx, pool, migrations))
	require.NoError(t, pgrepo.Migrate(ctx, pool, migrations), "running again is harmless")

	assert.Equal(t, int32(3), schemaVersion(t, pool))
	rows, err := pool.Query(ctx, "SELECT migration FROM runs ORDER BY migration")
	require.NoError(t, err)
	runs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	assert.Equal(t, []int{2, 3}, runs)
}

// TestMigrate_ConcurrentInstancesApplyEachMigrationOnce starts Migrate from
// eight pools at once, as eight instances of a service would: tern's
// advisory lock lets one migrate while the others wait, then find nothing
// to do.
func TestMigrate_ConcurrentInstancesApplyEachMigrationOnce(t *testing.T) {
	url := servicetest.PostgresURL(t)
	ctx := context.Background()
	const instances = 8

	pools := make([]*pgxpool.Pool, instances)
	for i := range pools {
		p, err := pgxpool.New(ctx, url)
		require.NoError(t, err)
		defer p.Close()
		pools[i] = p
	}
	start := make(chan struct{})
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = pgrepo.Migrate(ctx, p, migrations)
		}()
	}
	close(start)
	wg.Wait()

	for i, err := range errs {
		assert.NoError(t, err, "instance %d", i)
	}
	assert.Equal(t, int32(3), schemaVersion(t, pools[0]))
	var n int
	require.NoError(t, pools[0].QueryRow(ctx, "SELECT count(*) FROM runs").Scan(&n))
	assert.Equal(t, 2, n, "migrations 2 and 3 ran once each")
}

func TestMigrate_FailingMigrationIsRolledBackAndReported(t *testing.T) {
	pool := servicetest.Postgres(t)
	ctx := context.Background()
	bad := fstest.MapFS{
		"001_ok.sql":     {Data: []byte("CREATE TABLE ok (id int);")},
		"002_broken.sql": {Data: []byte("CREATE TABLE half (id int);\nINSERT INTO nowhere VALUES (1);")},
	}

	err := pgrepo.Migrate(ctx, pool, bad)

	require.Error(t, err)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "42P01", pgErr.Code, "undefined table")
	assert.Equal(t, int32(1), schemaVersion(t, pool), "the migration before it stays applied")
	var half bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT to_regclass('half') IS NOT NULL").Scan(&half))
	assert.False(t, half, "the failed migration was rolled back whole")
}

func TestMigrate_BadMigrationSetFails(t *testing.T) {
	pool := servicetest.Postgres(t)
	gap := fstest.MapFS{
		"001_a.sql": {Data: []byte("SELECT 1;")},
		"003_c.sql": {Data: []byte("SELECT 1;")},
	}
	err := pgrepo.Migrate(context.Background(), pool, gap)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Missing migration 2")
}
