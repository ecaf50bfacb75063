package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// collector is an OTLP/HTTP receiver that counts what it is sent, by path.
type collector struct {
	mu    sync.Mutex
	posts map[string]int
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.posts[r.Method+" "+r.URL.Path]++
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (c *collector) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.posts[key]
}

var requestLine = regexp.MustCompile(`(?m)^.*msg=request .*route="GET /health".*$`)

func TestRun_ExportsOverOTLPOnlyWhenAnEndpointIsSet(t *testing.T) {
	for _, tt := range []struct {
		name     string
		endpoint bool
	}{
		{"no endpoint: nothing exported", false},
		{"endpoint: spans and metrics exported", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &collector{posts: map[string]int{}}
			otlp := httptest.NewServer(c)
			defer otlp.Close()
			environment := testEnvironment(t)
			if tt.endpoint {
				// The exporters read the process's environment, run the
				// function it is given: both say the same.
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
				environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.URL
			} else {
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logs := &syncBuffer{}
			addr, done := start(t, ctx, environment, logs)
			assert.Equal(t, http.StatusOK, getStatus(t, "http://"+addr.String()+"/health"))
			// MongoDB's pool, through docrepo.Connect's pool monitor on the
			// same meter provider, is in /metrics too.
			res, err := http.Get("http://" + addr.String() + "/metrics")
			require.NoError(t, err)
			metrics, err := io.ReadAll(res.Body)
			res.Body.Close()
			require.NoError(t, err)
			assert.Regexp(t, `db_client_connection_count\{[^}]*db_client_connection_state="idle"[^}]*otel_scope_name="github.com/polystore/polystore/docrepo"`, string(metrics))
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Fatalf("run did not return after the context ended\n%s", logs)
			}

			// The request's log line has its trace and span ids, sampled or
			// not.
			line := requestLine.FindString(logs.String())
			require.NotEmpty(t, line, "%s", logs)
			t.Log(line)
			assert.Regexp(t, `trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16}`, line)
			assert.NotContains(t, line, "trace_id=00000000000000000000000000000000")

			if tt.endpoint {
				// Shutdown flushed both.
				assert.NotZero(t, c.count("POST /v1/traces"), "%v", c.posts)
				assert.NotZero(t, c.count("POST /v1/metrics"), "%v", c.posts)
				assert.Contains(t, logs.String(), "otlp=true")
			} else {
				assert.Empty(t, c.posts)
				assert.Contains(t, logs.String(), "otlp=false")
			}
			assert.False(t, strings.Contains(logs.String(), "flushing telemetry"), "shutdown flushed without error\n%s", logs)
		})
	}
}
