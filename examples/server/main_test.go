package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
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

func TestRun_MongoDBComingUpWithinStoreTimeoutAfterTheServerSelectionTimeoutIsWaitedFor(t *testing.T) {
	environment := testEnvironment(t)
	target, err := url.Parse(environment["MONGODB_URL"])
	require.NoError(t, err)
	// A port nothing listens on until the server has failed a first try
	// (its server selection timeout is REQUEST_TIMEOUT's 200ms); then a
	// forwarder to the test's MongoDB listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().String()
	require.NoError(t, ln.Close())
	mongoURL := *target
	mongoURL.Host = port
	environment["MONGODB_URL"] = mongoURL.String()
	environment["REQUEST_TIMEOUT"] = "200ms"
	environment["STORE_TIMEOUT"] = "30s"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		forwardOnceLogged(t, ctx, logs, "MongoDB does not answer yet", port, target.Host)
	}()
	defer func() { cancel(); <-forwarded }()
	addr, done := start(t, ctx, environment, logs)

	assert.Equal(t, http.StatusOK, getStatus(t, "http://"+addr.String()+"/readyz"))
	cancel()
	require.NoError(t, <-done)
}

// forwardOnceLogged waits (30s at most) until logs contain line, then
// listens on addr and forwards each connection to target until ctx ends.
func forwardOnceLogged(t *testing.T, ctx context.Context, logs *syncBuffer, line, addr, target string) {
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), line) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("listening on %s again: %v", addr, err)
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		context.AfterFunc(ctx, func() { c.Close(); up.Close() })
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
		go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
	}
}
