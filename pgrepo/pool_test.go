package pgrepo_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

// queryCounter is a pgx.QueryTracer, standing in for otelpgx.
type queryCounter struct{ n atomic.Int32 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// withParam adds a query parameter to a connection string in either form.
func withParam(url, key, value string) string {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		return url + sep + key + "=" + value
	}
	return url + " " + key + "=" + value
}

func TestOpen_AppliesConfigAndTracer(t *testing.T) {
	url := servicetest.PostgresURL(t)
	tracer := &queryCounter{}
	cfg := pgrepo.Config{
		MaxConns:          3,
		MinConns:          1,
		ConnectTimeout:    2 * time.Second,
		HealthCheckPeriod: 10 * time.Second,
		MaxConnLifetime:   time.Minute,
		MaxConnIdleTime:   20 * time.Second,
		Tracer:            tracer,
	}

	pool, err := pgrepo.Open(context.Background(), url, cfg)
	require.NoError(t, err)
	defer pool.Close()

	pc := pool.Config()
	assert.Equal(t, int32(3), pc.MaxConns)
	assert.Equal(t, int32(1), pc.MinConns)
	assert.Equal(t, 2*time.Second, pc.ConnConfig.ConnectTimeout)
	assert.Equal(t, 10*time.Second, pc.HealthCheckPeriod)
	assert.Equal(t, time.Minute, pc.MaxConnLifetime)
	assert.Equal(t, 20*time.Second, pc.MaxConnIdleTime)
	var one int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT 1").Scan(&one))
	assert.Positive(t, tracer.n.Load(), "the tracer saw the query")
}

func TestOpen_ZeroConfigKeepsURLSettingsElseDefaults(t *testing.T) {
	url := servicetest.PostgresURL(t)

	pool, err := pgrepo.Open(context.Background(), withParam(url, "pool_max_conns", "7"), pgrepo.Config{})
	require.NoError(t, err)
	defer pool.Close()
	assert.Equal(t, int32(7), pool.Config().MaxConns, "the URL's setting")
	assert.Equal(t, 5*time.Second, pool.Config().ConnConfig.ConnectTimeout, "pgrepo's default connect timeout")

	pool2, err := pgrepo.Open(context.Background(), withParam(url, "connect_timeout", "3"), pgrepo.Config{})
	require.NoError(t, err)
	defer pool2.Close()
	assert.Equal(t, 3*time.Second, pool2.Config().ConnConfig.ConnectTimeout, "the URL's connect_timeout")
}

func TestOpen_UnreachableServerFailsAtOpen(t *testing.T) {
	_, err := pgrepo.Open(context.Background(), "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable", pgrepo.Config{ConnectTimeout: time.Second})
	require.Error(t, err)
	assert.NotErrorIs(t, err, pgrepo.ErrInvalid)
	assert.Contains(t, err.Error(), "127.0.0.1:1")
}

func TestOpen_BadInputReturnsErrInvalid(t *testing.T) {
	_, err := pgrepo.Open(context.Background(), "postgres://user:s3cret@localhost:notaport/db", pgrepo.Config{})
	assert.ErrorIs(t, err, pgrepo.ErrInvalid)
	assert.NotContains(t, err.Error(), "s3cret", "the password does not leak into the error")

	_, err = pgrepo.Open(context.Background(), servicetest.PostgresURL(t), pgrepo.Config{MaxConns: 2, MinConns: 3})
	assert.ErrorIs(t, err, pgrepo.ErrInvalid)
}
