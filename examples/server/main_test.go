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

func TestRun_ServesFromEnvironmentThenShutsDownGracefullyWhenContextEnds(t *testing.T) {
	_, prefix := servicetest.Redis(t)
	environment := map[string]string{
		"ADDR":             "127.0.0.1:0",
		"POSTGRES_URL":     servicetest.PostgresURL(t),
		"REDIS_URL":        servicetest.RedisURL(t),
		"MONGODB_URL":      servicetest.MongoURL(t),
		"MONGODB_DATABASE": servicetest.Mongo(t).Name(),
		"REDIS_PREFIX":     prefix,
		"BCRYPT_COST":      "4",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, func(k string) string { return environment[k] }, logs, func(a net.Addr) { addrs <- a })
	}()

	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("run returned before listening: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("run did not listen within a minute\n%s", logs)
	}
	res, err := http.Get("http://" + addr.String() + "/health")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return after the context ended\n%s", logs)
	}
	assert.Contains(t, logs.String(), "shutting down")
	assert.Contains(t, logs.String(), "msg=stopped")
	_, err = net.DialTimeout("tcp", addr.String(), time.Second)
	assert.Error(t, err, "the listener is closed")
}

func TestRun_UnreachableStoreFailsAtStartNamingIt(t *testing.T) {
	environment := map[string]string{
		"ADDR":          "127.0.0.1:0",
		"POSTGRES_URL":  "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1",
		"STORE_TIMEOUT": "3s",
	}
	err := run(context.Background(), nil, func(k string) string { return environment[k] }, &syncBuffer{}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "PostgreSQL")
}
