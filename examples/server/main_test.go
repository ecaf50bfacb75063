package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/internal/servicetest"
)

// syncBuffer is a log sink that run's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testEnvironment points the server at the test's own databases.
func testEnvironment(t *testing.T) map[string]string {
	_, prefix := servicetest.Redis(t)
	return map[string]string{
		"ADDR":             "127.0.0.1:0",
		"POSTGRES_URL":     servicetest.PostgresURL(t),
		"REDIS_URL":        servicetest.RedisURL(t),
		"MONGODB_URL":      servicetest.MongoURL(t),
		"MONGODB_DATABASE": servicetest.Mongo(t).Name(),
		"REDIS_PREFIX":     prefix,
		"BCRYPT_COST":      "4",
	}
}

// start runs the server in the background and returns its address and the
// channel run's error arrives on.
func start(t *testing.T, ctx context.Context, environment map[string]string, logs *syncBuffer) (net.Addr, chan error) {
	t.Helper()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, func(k string) string { return environment[k] }, logs, func(a net.Addr) { addrs <- a })
	}()
	select {
	case addr := <-addrs:
		return addr, done
	case err := <-done:
		t.Fatalf("run returned before listening: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("run did not listen within a minute\n%s", logs)
	}
	return nil, nil
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	res.Body.Close()
	return res.StatusCode
}

func TestRun_ServesFromEnvironmentThenShutsDownGracefullyWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	addr, done := start(t, ctx, testEnvironment(t), logs)
	assert.Equal(t, http.StatusOK, getStatus(t, "http://"+addr.String()+"/health"))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return after the context ended\n%s", logs)
	}
	assert.Contains(t, logs.String(), "shutting down")
	assert.Contains(t, logs.String(), "msg=stopped")
	_, err := net.DialTimeout("tcp", addr.String(), time.Second)
	assert.Error(t, err, "the listener is closed")
}

func TestRun_UnreachablePostgresFailsAtStartNamingIt(t *testing.T) {
	environment := map[string]string{
		"ADDR":          "127.0.0.1:0",
		"POSTGRES_URL":  "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1",
		"STORE_TIMEOUT": "3s",
	}
	err := run(context.Background(), nil, func(k string) string { return environment[k] }, &syncBuffer{}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "PostgreSQL")
}

func TestRun_RedisDownAtStartServesDegraded(t *testing.T) {
	environment := testEnvironment(t)
	environment["REDIS_URL"] = "redis://127.0.0.1:1/0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	addr, done := start(t, ctx, environment, logs)

	// Degraded, not down: readiness stays 200 (Redis is optional), and
	// liveness never looks at a store.
	for _, path := range []string{"/livez", "/readyz", "/health"} {
		assert.Equal(t, http.StatusOK, getStatus(t, "http://"+addr.String()+path), path)
	}
	assert.Equal(t, http.StatusNotFound, getStatus(t, "http://"+addr.String()+"/users/3f1c1a52-0000-4000-8000-000000000000"),
		"reads go to PostgreSQL")
	assert.Contains(t, logs.String(), "Redis does not answer")
	cancel()
	require.NoError(t, <-done)
}

func TestRun_RedisHungAtStartServesDegraded(t *testing.T) {
	// A Redis that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	environment := testEnvironment(t)
	environment["REDIS_URL"] = "redis://" + ln.Addr().String() + "/0"
	environment["STORE_TIMEOUT"] = "5s"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	addr, done := start(t, ctx, environment, logs)

	assert.Equal(t, http.StatusNotFound, getStatus(t, "http://"+addr.String()+"/users/3f1c1a52-0000-4000-8000-000000000000"),
		"reads go to PostgreSQL")
	assert.Contains(t, logs.String(), "Redis does not answer")
	cancel()
	require.NoError(t, <-done)
}
