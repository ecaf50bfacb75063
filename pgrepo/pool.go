package pgrepo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config tunes the pool that Open returns. Its zero value is a good
// default; each zero field keeps the value given in the URL (pool_max_conns,
// connect_timeout, ... as pgxpool.ParseConfig reads them) or else the
// default its comment names. A negative count or duration is an error
// (ErrInvalid), never a default.
type Config struct {
	// MaxConns is the most connections the pool opens. Default: the URL's
	// pool_max_conns, else pgxpool's max(4, runtime.NumCPU()).
	MaxConns int32
	// MinConns is how many connections the pool keeps open when idle.
	// Default: the URL's pool_min_conns, else 0.
	MinConns int32
	// ConnectTimeout bounds the dial and authentication of one connection.
	// Default: the URL's connect_timeout, else 5s.
	ConnectTimeout time.Duration
	// HealthCheckPeriod is how often idle connections are checked and
	// expired ones closed. Default: the URL's pool_health_check_period,
	// else pgxpool's 1m.
	HealthCheckPeriod time.Duration
	// MaxConnLifetime closes connections older than that, so that load
	// spreads again after a failover. Default: the URL's
	// pool_max_conn_lifetime, else pgxpool's 1h.
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes connections idle for longer than that.
	// Default: the URL's pool_max_conn_idle_time, else pgxpool's 30m.
	MaxConnIdleTime time.Duration
	// Tracer receives every query, for tracing or logging: for OpenTelemetry,
	// otelpgx.NewTracer() (github.com/exaring/otelpgx) fits as it is.
	// Default (nil): no tracing.
	Tracer pgx.QueryTracer
}

// defaultConnectTimeout applies when neither Config nor the URL sets one:
// pgx itself would wait as long as the OS does.
const defaultConnectTimeout = 5 * time.Second

// Open parses url (a postgres:// URL or keyword/value string, as pgx
// accepts), applies cfg, opens a pool and pings the server through it
// before returning, so that a wrong URL or an unreachable server fails here
// and not on the first query. It returns an error wrapping ErrInvalid, before
// connecting, for a URL it cannot parse, a negative Config field, or
// MinConns above MaxConns. On error no pool is left open. For settings
// Config does not have, build a pgxpool.Config yourself:
// every repository method accepts any *pgxpool.Pool.
func Open(ctx context.Context, url string, cfg Config) (*pgxpool.Pool, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse error can quote the URL, password included: say
		// only what kind of problem it is.
		return nil, fmt.Errorf("%w: pgrepo.Open: cannot parse the connection string", ErrInvalid)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.MinConns > 0 {
		pc.MinConns = cfg.MinConns
	}
	if pc.MinConns > pc.MaxConns {
		return nil, fmt.Errorf("%w: pgrepo.Open: MinConns %d above MaxConns %d", ErrInvalid, pc.MinConns, pc.MaxConns)
	}
	switch {
	case cfg.ConnectTimeout > 0:
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	case pc.ConnConfig.ConnectTimeout == 0:
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.HealthCheckPeriod > 0 {
		pc.HealthCheckPeriod = cfg.HealthCheckPeriod
	}
	if cfg.MaxConnLifetime > 0 {
		pc.MaxConnLifetime = cfg.MaxConnLifetime
	}
	if cfg.MaxConnIdleTime > 0 {
		pc.MaxConnIdleTime = cfg.MaxConnIdleTime
	}
	if cfg.Tracer != nil {
		pc.ConnConfig.Tracer = cfg.Tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgrepo.Open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgrepo.Open: ping %s:%d: %w", pc.ConnConfig.Host, pc.ConnConfig.Port, err)
	}
	return pool, nil
}

// validate rejects the values that have no meaning: zero means the
// default, so a negative one would otherwise pass for it silently.
func (c Config) validate() error {
	var bad []string
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"MaxConns", c.MaxConns < 0},
		{"MinConns", c.MinConns < 0},
		{"ConnectTimeout", c.ConnectTimeout < 0},
		{"HealthCheckPeriod", c.HealthCheckPeriod < 0},
		{"MaxConnLifetime", c.MaxConnLifetime < 0},
		{"MaxConnIdleTime", c.MaxConnIdleTime < 0},
	} {
		if f.neg {
			bad = append(bad, f.name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: pgrepo.Open: negative %s (0 means the default): nothing opened", ErrInvalid, strings.Join(bad, ", "))
	}
	return nil
}
