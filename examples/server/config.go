package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/server"
)

// config is the server's configuration. Every setting has a flag and an
// environment variable; the flag wins, then the variable, then the default.
type config struct {
	Addr            string
	PostgresURL     string
	RedisURL        string
	MongoURL        string
	MongoDatabase   string
	PGMaxConns      int
	RedisPoolSize   int
	MongoMaxPool    int
	StoreTimeout    time.Duration
	RequestTimeout  time.Duration
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration
	RateLimit       int
	RateBurst       int
	CacheTTL        time.Duration
	CacheDisabled   bool
	BcryptCost      int
	SessionIdle     time.Duration
	SessionLifetime time.Duration
	LoginWindow     time.Duration
	LoginPerAccount int
	LoginPerClient  int
	MaxBodyBytes    int64
	RedisPrefix     string
	LogLevel        slog.Level
	LogFormat       string
	SagaKeys        []coord.Key
	AdminToken      string
	AdminReadOnly   bool
	RecoverEvery    time.Duration
	SagaLease       time.Duration
}

// loadConfig reads the configuration from args (flags) and getenv. -h
// prints every setting with its variable and default.
func loadConfig(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(usage)

	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address (ADDR)")
	fs.StringVar(&c.PostgresURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL URL (POSTGRES_URL)")
	fs.StringVar(&c.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL (REDIS_URL)")
	fs.StringVar(&c.MongoURL, "mongodb-url", "mongodb://127.0.0.1:27017/", "MongoDB URL (MONGODB_URL)")
	fs.StringVar(&c.MongoDatabase, "mongodb-database", "polystore_example", "MongoDB database (MONGODB_DATABASE)")
	fs.IntVar(&c.PGMaxConns, "pg-max-conns", 0, "PostgreSQL pool size; 0: the URL's pool_max_conns, else max(4, CPUs) (PG_MAX_CONNS)")
	fs.IntVar(&c.RedisPoolSize, "redis-pool-size", 0, "Redis pool size; 0: 10 per CPU (REDIS_POOL_SIZE)")
	fs.IntVar(&c.MongoMaxPool, "mongodb-max-pool-size", 0, "MongoDB pool size; 0: the driver's 100 (MONGODB_MAX_POOL_SIZE)")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", 10*time.Second, "bound on connecting to each store and on migrations at start (STORE_TIMEOUT)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", server.DefaultRequestTimeout, "deadline of each API request's store calls, then 503 (a logged write: 202); coord's release and settle waits after a cut (coord.Options.SettleTimeout, 2s) can add to the answer's time; also the stores' connect and MongoDB's server selection timeout; 0: the default; negative: none (REQUEST_TIMEOUT)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 10*time.Second, "HTTP read timeout (READ_TIMEOUT)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 30*time.Second, "HTTP write timeout (WRITE_TIMEOUT)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 2*time.Minute, "HTTP keep-alive idle timeout (IDLE_TIMEOUT)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "time in-flight requests get to finish on SIGINT/SIGTERM (SHUTDOWN_TIMEOUT)")
	fs.IntVar(&c.RateLimit, "rate-limit", 100, "requests per second per client; 0: 100; negative: no limit (RATE_LIMIT)")
	fs.IntVar(&c.RateBurst, "rate-burst", 200, "burst per client; 0: twice the rate (RATE_BURST)")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", 10*time.Minute, "profile cache TTL (CACHE_TTL)")
	fs.BoolVar(&c.CacheDisabled, "cache-disabled", false, "read profiles from PostgreSQL every time, for comparison (CACHE_DISABLED)")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", 10, "bcrypt cost of password hashes, 4 to 31 (BCRYPT_COST)")
	fs.DurationVar(&c.SessionIdle, "session-idle-timeout", 30*time.Minute, "a session unused this long ends (SESSION_IDLE_TIMEOUT)")
	fs.DurationVar(&c.SessionLifetime, "session-lifetime", 24*time.Hour, "every session ends this long after its login (SESSION_LIFETIME)")
	fs.DurationVar(&c.LoginWindow, "login-window", 15*time.Minute, "window in which failed logins are counted, whole seconds (LOGIN_WINDOW)")
	fs.IntVar(&c.LoginPerAccount, "login-failures-per-account", 10, "failed logins per account and window before 429; negative: no limit (LOGIN_FAILURES_PER_ACCOUNT)")
	fs.IntVar(&c.LoginPerClient, "login-failures-per-client", 50, "failed logins per client address and window before 429 (LOGIN_FAILURES_PER_CLIENT)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 64<<10, "largest request body accepted (MAX_BODY_BYTES)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "polystore:example:", "prefix of every Redis key (REDIS_PREFIX)")
	sagaKeys := fs.String("saga-keys", "", "key ring sealing the saga states, a secret better set through the variable: comma-separated id:base64 of 32 bytes, oldest first, the last seals; empty: states unsealed, password hashes never logged (SAGA_KEYS)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "password (HTTP Basic, any user name) of the saga console under /admin/, a secret better set through the variable; empty: no console (ADMIN_TOKEN)")
	fs.BoolVar(&c.AdminReadOnly, "admin-readonly", false, "saga console without Retry and Resolve (ADMIN_READONLY)")
	fs.DurationVar(&c.RecoverEvery, "recover-every", 0, "interval of the saga recovery loop; 0: coord's 10s (RECOVER_EVERY)")
	fs.DurationVar(&c.SagaLease, "saga-lease", 0, "how long a saga stays reserved to this instance after its last log write; 0: coord's 30s (SAGA_LEASE)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json (LOG_FORMAT)")

	// Each flag's variable is its name in upper case with _ for -: set from
	// the environment first, so that the command line, parsed next, wins.
	// The flag package parses both, so both fail the same way.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: not a valid -%s value (see -h)", name, v, f.Name)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := c.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return c, fmt.Errorf("log level %q: %w", *logLevel, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, fmt.Errorf("log format %q: must be text or json", c.LogFormat)
	}
	keys, err := parseSagaKeys(*sagaKeys)
	if err != nil {
		return c, err
	}
	c.SagaKeys = keys
	if c.RequestTimeout == 0 {
		// 0 is the default, as the help says: main sets the stores'
		// connect timeouts from this value, not server.Options.
		c.RequestTimeout = server.DefaultRequestTimeout
	}
	return c, nil
}

// parseSagaKeys reads a key ring written as id:base64,id:base64 (standard
// base64 of 32 bytes each), oldest first. Its errors never contain a
// secret.
func parseSagaKeys(s string) ([]coord.Key, error) {
	if s == "" {
		return nil, nil
	}
	var keys []coord.Key
	for i, item := range strings.Split(s, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok || id == "" {
			return nil, fmt.Errorf("SAGA_KEYS: key %d: not id:base64", i+1)
		}
		b, err := base64.StdEncoding.DecodeString(secret)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("SAGA_KEYS: key %q: not the standard base64 of 32 bytes", id)
		}
		keys = append(keys, coord.Key{ID: id, Secret: b})
	}
	if _, err := coord.NewSealer(keys...); err != nil { // ids given twice, ...
		return nil, fmt.Errorf("SAGA_KEYS: %w", err)
	}
	return keys, nil
}
