package servicetest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// crashSettings keep WAL of asynchronous commits in the server's buffers:
// the WAL writer flushes them only every 10s (its longest delay), and no
// checkpoint or autovacuum writes WAL in between.
var crashSettings = map[string]string{
	"wal_writer_delay":   "10s",
	"checkpoint_timeout": "1h",
	"autovacuum":         "off",
}

func TestPGCluster_ImmediateRestartKeepsDurableCommitsAndLosesUnflushedOnes(t *testing.T) {
	c := NewPGCluster(t, PGClusterOptions{Settings: crashSettings})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL())
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `create table t (id text primary key)`)
	require.NoError(t, err)
	var delay string
	require.NoError(t, conn.QueryRow(ctx, `show wal_writer_delay`).Scan(&delay))
	require.Equal(t, "10s", delay, "the settings reach the server")

	_, err = conn.Exec(ctx, `insert into t values ('durable')`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `set synchronous_commit = off`)
	require.NoError(t, err)
	// Committed: visible to every session, but its WAL is not flushed.
	_, err = conn.Exec(ctx, `insert into t values ('async')`)
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `select count(*) from t`).Scan(&n))
	require.Equal(t, 2, n)

	pid := c.PID()
	require.NotZero(t, pid)
	require.NoError(t, c.Restart(Immediate))
	assert.NotEqual(t, pid, c.PID(), "a new server process")
	_ = conn.Close(ctx) // its server is gone

	conn, err = pgx.Connect(ctx, c.URL())
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `select id from t order by id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"durable"}, ids, "the synchronous commit survives the crash, the asynchronous one is lost")
}

func TestPGCluster_FastRestartLosesNothingAndStopEndsTheServer(t *testing.T) {
	c := NewPGCluster(t, PGClusterOptions{Settings: crashSettings})
	ctx := context.Background()
	dbURL, err := c.CreateDatabase(ctx, "app")
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `create table t (id text primary key)`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `set synchronous_commit = off; insert into t values ('async')`)
	require.NoError(t, err)
	_ = conn.Close(ctx)

	port := c.Port()
	require.NoError(t, c.Restart(Fast))
	assert.Equal(t, port, c.Port(), "the same port after a restart")
	conn, err = pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `select count(*) from t`).Scan(&n))
	_ = conn.Close(ctx)
	assert.Equal(t, 1, n, "a clean shutdown flushes the asynchronous commit")

	require.NoError(t, c.Stop(Fast))
	assert.Zero(t, c.PID())
	_, err = pgx.Connect(ctx, dbURL)
	assert.Error(t, err, "nothing answers once stopped")
	require.NoError(t, c.Stop(Immediate), "stopping a stopped server does nothing")
	require.NoError(t, c.Start())
	assert.Error(t, c.Start(), "starting a running server")
}

func TestNewPGCluster_WithoutBinariesSkipsOrFailsWhenServicesAreRequired(t *testing.T) {
	tests := []struct {
		require             string
		wantFatal, wantSkip string
	}{
		{require: "", wantSkip: "no PostgreSQL server binaries"},
		{require: "1", wantFatal: "POLYSTORE_REQUIRE_SERVICES=1 forbids skipping"},
	}
	for _, tt := range tests {
		t.Run("require="+tt.require, func(t *testing.T) {
			t.Setenv(PGBinDirEnv, t.TempDir()) // no initdb there
			t.Setenv(RequireEnv, tt.require)
			rec := &recordingTB{}
			assert.Nil(t, NewPGCluster(rec, PGClusterOptions{}))
			if tt.wantFatal != "" {
				assert.Contains(t, rec.fatal, tt.wantFatal)
				assert.Empty(t, rec.skip)
			} else {
				assert.Contains(t, rec.skip, tt.wantSkip)
				assert.Empty(t, rec.fatal)
			}
		})
	}
}
