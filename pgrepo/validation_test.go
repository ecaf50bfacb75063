package pgrepo_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

func TestOpen_NegativeConfigReturnsErrInvalidNotADefault(t *testing.T) {
	url := servicetest.PostgresURL(t)
	tests := []struct {
		name string
		cfg  pgrepo.Config
		want string
	}{
		{"negative MaxConns", pgrepo.Config{MaxConns: -1}, "MaxConns"},
		{"negative MinConns", pgrepo.Config{MinConns: -1}, "MinConns"},
		{"negative ConnectTimeout", pgrepo.Config{ConnectTimeout: -time.Second}, "ConnectTimeout"},
		{"negative HealthCheckPeriod", pgrepo.Config{HealthCheckPeriod: -time.Second}, "HealthCheckPeriod"},
		{"negative MaxConnLifetime", pgrepo.Config{MaxConnLifetime: -time.Second}, "MaxConnLifetime"},
		{"negative MaxConnIdleTime", pgrepo.Config{MaxConnIdleTime: -time.Nanosecond}, "MaxConnIdleTime"},
		{"several at once", pgrepo.Config{MaxConns: -2, MaxConnIdleTime: -time.Second}, "MaxConns, MaxConnIdleTime"},
		{"MinConns above MaxConns", pgrepo.Config{MaxConns: 2, MinConns: 3}, "MinConns 3 above MaxConns 2"},
		{"MinConns above the URL's MaxConns", pgrepo.Config{MinConns: 1000}, "above MaxConns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := pgrepo.Open(context.Background(), url, tt.cfg)
			assert.Nil(t, pool, "no pool is opened")
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestInTx_InvalidOptionsReturnErrInvalidBeforeAnything(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		opts pgrepo.TxOptions
		want string
	}{
		{"negative MaxAttempts", pgrepo.TxOptions{MaxAttempts: -1}, "MaxAttempts"},
		{"negative BaseDelay", pgrepo.TxOptions{BaseDelay: -time.Millisecond}, "BaseDelay"},
		{"negative MaxDelay", pgrepo.TxOptions{MaxDelay: -time.Millisecond}, "MaxDelay"},
		{"BaseDelay above MaxDelay", pgrepo.TxOptions{BaseDelay: time.Second, MaxDelay: time.Millisecond}, "above MaxDelay"},
		{"unknown IsoLevel", pgrepo.TxOptions{IsoLevel: "snapshot"}, `IsoLevel "snapshot"`},
		{"IsoLevel that would inject SQL", pgrepo.TxOptions{IsoLevel: "serializable; DROP TABLE teams"}, "unknown IsoLevel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := pgrepo.InTx(context.Background(), f.pool, tt.opts, func(pgx.Tx) error { calls++; return nil })
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.ErrorContains(t, err, tt.want)
			assert.Zero(t, calls, "fn never ran")
		})
	}
}

func TestInTx_ValidOptionsAreAccepted(t *testing.T) {
	f := newFixture(t)
	for name, opts := range map[string]pgrepo.TxOptions{
		"zero":                              {},
		"read uncommitted":                  {IsoLevel: pgx.ReadUncommitted},
		"BaseDelay above the default max":   {BaseDelay: 2 * time.Second},
		"BaseDelay equal to MaxDelay":       {BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		"one attempt":                       {MaxAttempts: 1},
		"read committed, read only":         {IsoLevel: pgx.ReadCommitted, ReadOnly: true},
		"repeatable read, explicit retries": {IsoLevel: pgx.RepeatableRead, MaxAttempts: 2},
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			require.NoError(t, pgrepo.InTx(context.Background(), f.pool, opts, func(pgx.Tx) error { calls++; return nil }))
			assert.Equal(t, 1, calls)
		})
	}
}

func TestRepository_NilDBReturnsErrInvalid(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := account{Email: "a@example.com", Name: "A"}
	tests := map[string]func() error{
		"Get":        func() error { _, err := f.accounts.Get(ctx, nil, 1); return err },
		"Exists":     func() error { _, err := f.accounts.Exists(ctx, nil, 1); return err },
		"Insert":     func() error { return f.accounts.Insert(ctx, nil, &a) },
		"InsertMany": func() error { _, err := f.accounts.InsertMany(ctx, nil, []account{a}); return err },
		"Update":     func() error { return f.accounts.Update(ctx, nil, &a) },
		"Patch":      func() error { _, err := f.accounts.Patch(ctx, nil, 1, map[string]any{"name": "x"}); return err },
		"PatchVersion": func() error {
			_, err := f.accounts.PatchVersion(ctx, nil, 1, 1, map[string]any{"name": "x"})
			return err
		},
		"Delete": func() error { return f.accounts.Delete(ctx, nil, 1) },
		"Upsert": func() error { return f.accounts.Upsert(ctx, nil, &a, "email") },
		"Count":  func() error { _, err := f.accounts.Count(ctx, nil, nil); return err },
		"List":   func() error { _, err := f.accounts.List(ctx, nil, pgrepo.Query{}); return err },
	}
	for name, call := range tests {
		t.Run(name, func(t *testing.T) {
			err := call()
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.ErrorContains(t, err, "nil DB")
		})
	}
}

func TestRepository_Upsert_ConflictColumnNamedTwiceReturnsErrInvalid(t *testing.T) {
	f := newFixture(t)
	db := &countingDB{DB: f.pool}

	err := f.accounts.Upsert(context.Background(), db, &account{Email: "x", Name: "x"}, "email", "email")

	assert.ErrorIs(t, err, pgrepo.ErrInvalid)
	assert.Zero(t, db.calls)
}

func TestMigrate_NilArgumentsReturnErrInvalid(t *testing.T) {
	pool := servicetest.Postgres(t)
	assert.ErrorIs(t, pgrepo.Migrate(context.Background(), nil, fstest.MapFS{}), pgrepo.ErrInvalid)
	assert.ErrorIs(t, pgrepo.Migrate(context.Background(), pool, nil), pgrepo.ErrInvalid)
}
