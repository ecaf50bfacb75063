package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"
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
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration
	RateLimit       int
	RateBurst       int
	CacheTTL        time.Duration
	CacheDisabled   bool
	BcryptCost      int
	MaxBodyBytes    int64
	RedisPrefix     string
	LogLevel        slog.Level
	LogFormat       string
}

// loadConfig reads the configuration from args (flags) and getenv. -h
// prints every setting with its variable and default.
func loadConfig(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(usage)
	e := envDefaults{getenv: getenv}

	fs.StringVar(&c.Addr, "addr", e.str("ADDR", "127.0.0.1:8080"), "listen address (ADDR)")
	fs.StringVar(&c.PostgresURL, "postgres-url", e.str("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL URL (POSTGRES_URL)")
	fs.StringVar(&c.RedisURL, "redis-url", e.str("REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL (REDIS_URL)")
	fs.StringVar(&c.MongoURL, "mongodb-url", e.str("MONGODB_URL", "mongodb://127.0.0.1:27017/"), "MongoDB URL (MONGODB_URL)")
	fs.StringVar(&c.MongoDatabase, "mongodb-database", e.str("MONGODB_DATABASE", "polystore_example"), "MongoDB database (MONGODB_DATABASE)")
	fs.IntVar(&c.PGMaxConns, "pg-max-conns", e.int("PG_MAX_CONNS", 0), "PostgreSQL pool size; 0: the URL's pool_max_conns, else max(4, CPUs) (PG_MAX_CONNS)")
	fs.IntVar(&c.RedisPoolSize, "redis-pool-size", e.int("REDIS_POOL_SIZE", 0), "Redis pool size; 0: 10 per CPU (REDIS_POOL_SIZE)")
	fs.IntVar(&c.MongoMaxPool, "mongodb-max-pool-size", e.int("MONGODB_MAX_POOL_SIZE", 0), "MongoDB pool size; 0: the driver's 100 (MONGODB_MAX_POOL_SIZE)")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", e.duration("STORE_TIMEOUT", 10*time.Second), "bound on connecting to each store and on migrations at start (STORE_TIMEOUT)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", e.duration("READ_TIMEOUT", 10*time.Second), "HTTP read timeout (READ_TIMEOUT)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", e.duration("WRITE_TIMEOUT", 30*time.Second), "HTTP write timeout (WRITE_TIMEOUT)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", e.duration("IDLE_TIMEOUT", 2*time.Minute), "HTTP keep-alive idle timeout (IDLE_TIMEOUT)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", e.duration("SHUTDOWN_TIMEOUT", 20*time.Second), "time in-flight requests get to finish on SIGINT/SIGTERM (SHUTDOWN_TIMEOUT)")
	fs.IntVar(&c.RateLimit, "rate-limit", e.int("RATE_LIMIT", 100), "requests per second per client; 0: 100; negative: no limit (RATE_LIMIT)")
	fs.IntVar(&c.RateBurst, "rate-burst", e.int("RATE_BURST", 200), "burst per client; 0: twice the rate (RATE_BURST)")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", e.duration("CACHE_TTL", 10*time.Minute), "profile cache TTL (CACHE_TTL)")
	fs.BoolVar(&c.CacheDisabled, "cache-disabled", e.bool("CACHE_DISABLED", false), "read profiles from PostgreSQL every time, for comparison (CACHE_DISABLED)")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", e.int("BCRYPT_COST", 10), "bcrypt cost of password hashes, 4 to 31 (BCRYPT_COST)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", int64(e.int("MAX_BODY_BYTES", 64<<10)), "largest request body accepted (MAX_BODY_BYTES)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", e.str("REDIS_PREFIX", "polystore:example:"), "prefix of every Redis key (REDIS_PREFIX)")
	logLevel := fs.String("log-level", e.str("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", e.str("LOG_FORMAT", "text"), "text or json (LOG_FORMAT)")

	if e.err != nil {
		return c, e.err
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
	return c, nil
}

// envDefaults reads defaults from the environment and keeps the first
// malformed value's error.
type envDefaults struct {
	getenv func(string) string
	err    error
}

func (e *envDefaults) str(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

func (e *envDefaults) int(name string, def int) int {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s=%q: not an integer", name, v)
	}
	return n
}

func (e *envDefaults) duration(name string, def time.Duration) time.Duration {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s=%q: not a duration such as 5s", name, v)
	}
	return d
}

func (e *envDefaults) bool(name string, def bool) bool {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s=%q: not true or false", name, v)
	}
	return b
}
