package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/polystore/polystore/examples/server/internal/server"
)

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log records written so far.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// spanTree renders the spans of one trace as an indented tree of names
// and durations, children in start order.
func spanTree(spans []sdktrace.ReadOnlySpan) string {
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = true
	}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent().SpanID(); p.IsValid() && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(s sdktrace.ReadOnlySpan, prefix string, last, root bool)
	walk = func(s sdktrace.ReadOnlySpan, prefix string, last, root bool) {
		branch, next := "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
		if root {
			branch, next = "", ""
		}
		fmt.Fprintf(&b, "%s%s%-*s %8.2f ms\n", prefix, branch, 72-len([]rune(prefix+branch)), s.Name(),
			float64(s.EndTime().Sub(s.StartTime()).Microseconds())/1000)
		kids := children[s.SpanContext().SpanID()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].StartTime().Before(kids[j].StartTime()) })
		for i, k := range kids {
			walk(k, prefix+next, i == len(kids)-1, false)
		}
	}
	for _, r := range roots {
		walk(r, "", true, true)
	}
	return b.String()
}

func TestServer_Telemetry_ARegistrationIsOneTraceFromTheRequestThroughEachSagaStepToTheStores(t *testing.T) {
	ctx := context.Background()
	recorder := tracetest.NewSpanRecorder()
	tel, err := server.NewTelemetry(ctx, server.TelemetryOptions{SpanProcessors: []sdktrace.SpanProcessor{recorder}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	logs := &lockedBuffer{}
	e := newEnv(t, func(o *server.Options, _ *server.Stores) {
		o.Telemetry = tel
		o.Logger = slog.New(server.WithTraceIDs(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	})

	res := e.do("POST", "/users", `{"username":"ada","email":"ada@example.org","password":"correct horse","language":"fr"}`)
	require.Equal(t, http.StatusCreated, res.Status, "%s", res.Raw)

	// otelhttp ends the request's span once the handler has returned,
	// which the client may see the answer before.
	var httpSpan sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range recorder.Ended() {
			if s.SpanKind() == trace.SpanKindServer && s.Name() == "POST /users" {
				httpSpan = s
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "no server span POST /users among:\n%s", spanTree(recorder.Ended()))
	traceID := httpSpan.SpanContext().TraceID()
	var spans []sdktrace.ReadOnlySpan
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range recorder.Ended() {
		if s.SpanContext().TraceID() == traceID {
			spans = append(spans, s)
			byName[s.Name()] = append(byName[s.Name()], s)
		}
	}
	tree := spanTree(spans)
	t.Logf("the registration's trace:\n%s", tree)

	assert.False(t, httpSpan.Parent().IsValid(), "the HTTP span is the root")
	assert.Contains(t, httpSpan.Attributes(), attribute.String("http.route", "/users"))
	one := func(name string) sdktrace.ReadOnlySpan {
		t.Helper()
		require.Len(t, byName[name], 1, "one %q span in the trace:\n%s", name, tree)
		return byName[name][0]
	}
	childOf := func(child, parent sdktrace.ReadOnlySpan) {
		t.Helper()
		assert.Equal(t, parent.SpanContext().SpanID(), child.Parent().SpanID(), "%q is a child of %q:\n%s", child.Name(), parent.Name(), tree)
	}
	run := one("coord.Run register-user")
	childOf(run, httpSpan)
	insert := one("coord.step insert-user")
	welcome := one("coord.step create-welcome-conversation")
	clear := one("coord.step clear-profile-cache")
	for _, step := range []sdktrace.ReadOnlySpan{insert, welcome, clear} {
		childOf(step, run)
	}
	assert.True(t, insert.StartTime().Before(welcome.StartTime()) && welcome.StartTime().Before(clear.StartTime()), "steps in order")
	pg := one("pgrepo.Insert users")
	childOf(pg, insert)
	assert.Equal(t, trace.SpanKindClient, pg.SpanKind())
	mongo := one("docrepo.Insert conversations")
	childOf(mongo, welcome)
	assert.Equal(t, trace.SpanKindClient, mongo.SpanKind())

	var invalidate []sdktrace.ReadOnlySpan
	for name, ss := range byName {
		if strings.HasPrefix(name, "cacherepo.Invalidate ") {
			invalidate = append(invalidate, ss...)
		}
	}
	require.Len(t, invalidate, 1, "the Redis work:\n%s", tree)
	childOf(invalidate[0], clear)
	assert.Len(t, spans, 8, "nothing else in the trace:\n%s", tree)

	// /metrics serves the same meters: coord's and the repositories'
	// instruments next to the server's own, each counted once.
	metrics := string(e.do("GET", "/metrics", "").Raw)
	for _, want := range []string{
		`coord_saga_started_total{otel_scope_name="github.com/polystore/polystore/coord",otel_scope_schema_url="",otel_scope_version="",polystore_saga_name="register-user"} 1`,
		`db_client_operation_duration_seconds_count{db_collection_name="users",db_operation_name="Insert",db_system_name="postgresql",otel_scope_name="github.com/polystore/polystore/pgrepo",otel_scope_schema_url="",otel_scope_version=""} 1`,
		`db_operation_name="Insert",db_system_name="mongodb",otel_scope_name="github.com/polystore/polystore/docrepo"`,
		`sagas_total{outcome="succeeded",saga="register-user"} 1`,
		`http_requests_total{route="POST /users",status="201"} 1`,
	} {
		assert.Contains(t, metrics, want)
	}
	for _, twice := range []string{"cacherepo", "http_server_request", "db_client_connection"} {
		// profile_cache_*, http_requests_total, postgres_pool_* and
		// redis_pool_* count those (MongoDB's pool is counted only by
		// docrepo's db_client_connection_*, installed by main).
		assert.NotContains(t, metrics, twice, "counted twice")
	}

	// Every log line of the request carries its trace: the request line the
	// HTTP span's ids, the saga's step lines their step span's.
	var requestLines, stepLines int
	for _, l := range logs.lines(t) {
		switch {
		case l["msg"] == "request" && l["route"] == "POST /users":
			requestLines++
			assert.Equal(t, traceID.String(), l["trace_id"])
			assert.Equal(t, httpSpan.SpanContext().SpanID().String(), l["span_id"])
		case l["saga"] == "register-user":
			stepLines++
			assert.Equal(t, traceID.String(), l["trace_id"], "%v", l)
		}
	}
	assert.Equal(t, 1, requestLines)
	assert.NotZero(t, stepLines, "coord's step logs are in the trace too")
}
