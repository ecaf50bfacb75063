package pgrepo_test

import (
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

// observed is the test schema with repositories whose spans and metrics go
// to in-memory recorders, on a pool whose pgx tracer records the span that
// each statement's context carries (where otelpgx would hang its statement
// span).
type observed struct {
	pool       *pgxpool.Pool
	accounts   *pgrepo.Repository[account, int64]
	teams      *pgrepo.Repository[team, int64]
	spans      *tracetest.SpanRecorder
	tp         *sdktrace.TracerProvider
	mp         *sdkmetric.MeterProvider
	reader     *sdkmetric.ManualReader
	statements *statementParents
}

func newObserved(t *testing.T) *observed {
	t.Helper()
	base := servicetest.Postgres(t)
	_, err := base.Exec(context.Background(), schema)
	require.NoError(t, err)
	o := &observed{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(), statements: &statementParents{}}
	cfg := base.Config()
	cfg.ConnConfig.Tracer = o.statements
	o.pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(o.pool.Close)
	o.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	o.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))
	opts := pgrepo.Options{TracerProvider: o.tp, MeterProvider: o.mp}
	o.accounts, err = pgrepo.NewWithOptions[account, int64]("accounts", opts)
	require.NoError(t, err)
	o.teams, err = pgrepo.NewWithOptions[team, int64]("teams", opts)
	require.NoError(t, err)
	return o
}

// ended returns the spans ended since the last call, and forgets them.
func (o *observed) ended() []sdktrace.ReadOnlySpan {
	s := o.spans.Ended()
	o.spans.Reset()
	return s
}

// statementParents is a pgx QueryTracer that notes, for each statement, the
// span in its context: the parent that otelpgx's statement span would get.
type statementParents struct {
	mu      sync.Mutex
	parents map[string][]trace.SpanContext // by SQL text
}

func (s *statementParents) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parents == nil {
		s.parents = map[string][]trace.SpanContext{}
	}
	s.parents[data.SQL] = append(s.parents[data.SQL], trace.SpanContextFromContext(ctx))
	return ctx
}

func (s *statementParents) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// of returns the span contexts of the statements whose SQL starts with prefix.
func (s *statementParents) of(prefix string) []trace.SpanContext {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []trace.SpanContext
	for sql, ps := range s.parents {
		if strings.HasPrefix(sql, prefix) {
			out = append(out, ps...)
		}
	}
	return out
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestRepository_Telemetry_OneClientSpanPerCallWithDatabaseAttributes(t *testing.T) {
	o := newObserved(t)
	ctx := context.Background()
	a := account{Email: "ada@example.com", Name: "Ada"}
	require.NoError(t, o.accounts.Insert(ctx, o.pool, &a))
	o.ended()

	tests := []struct {
		method string
		call   func() error
		// want holds the attributes besides the four every span has.
		want map[attribute.Key]attribute.Value
	}{
		{"Insert", func() error {
			return o.accounts.Insert(ctx, o.pool, &account{Email: "grace@example.com", Name: "Grace"})
		}, map[attribute.Key]attribute.Value{"polystore.affected": attribute.Int64Value(1)}},
		{"Get", func() error { _, err := o.accounts.Get(ctx, o.pool, a.ID); return err },
			map[attribute.Key]attribute.Value{"db.response.returned_rows": attribute.IntValue(1)}},
		{"Exists", func() error { _, err := o.accounts.Exists(ctx, o.pool, a.ID); return err }, nil},
		{"Update", func() error { a.Name = "Ada L"; return o.accounts.Update(ctx, o.pool, &a) },
			map[attribute.Key]attribute.Value{"polystore.affected": attribute.Int64Value(1)}},
		{"Patch", func() error {
			_, err := o.accounts.Patch(ctx, o.pool, a.ID, map[string]any{"balance": 5})
			return err
		}, map[attribute.Key]attribute.Value{"polystore.affected": attribute.Int64Value(1)}},
		{"PatchVersion", func() error {
			_, err := o.accounts.PatchVersion(ctx, o.pool, a.ID, 3, map[string]any{"balance": 6})
			return err
		}, map[attribute.Key]attribute.Value{"polystore.affected": attribute.Int64Value(1)}},
		{"Upsert", func() error {
			return o.accounts.Upsert(ctx, o.pool, &account{Email: "ada@example.com", Name: "Ada"}, "email")
		}, map[attribute.Key]attribute.Value{"polystore.affected": attribute.Int64Value(1)}},
		{"InsertMany", func() error {
			_, err := o.accounts.InsertMany(ctx, o.pool, []account{{Email: "x@example.com", Name: "X"}, {Email: "y@example.com", Name: "Y"}})
			return err
		}, map[attribute.Key]attribute.Value{"polystore.affected": attribute.Int64Value(2), "db.operation.batch.size": attribute.IntValue(2)}},
		{"List", func() error { _, err := o.accounts.List(ctx, o.pool, pgrepo.Query{Limit: 3}); return err },
			map[attribute.Key]attribute.Value{"db.response.returned_rows": attribute.IntValue(3)}},
		{"Count", func() error { _, err := o.accounts.Count(ctx, o.pool, nil); return err }, nil},
		{"Delete", func() error { return o.accounts.Delete(ctx, o.pool, a.ID) },
			map[attribute.Key]attribute.Value{"polystore.affected": attribute.Int64Value(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			require.NoError(t, tt.call())
			spans := o.ended()
			require.Len(t, spans, 1, "one span per call")
			s := spans[0]
			assert.Equal(t, "pgrepo."+tt.method+" accounts", s.Name())
			assert.Equal(t, trace.SpanKindClient, s.SpanKind())
			assert.Equal(t, otelcodes.Unset, s.Status().Code)
			assert.Equal(t, pgrepo.ScopeName, s.InstrumentationScope().Name)
			got := spanAttrs(s)
			assert.Equal(t, "postgresql", got["db.system.name"].AsString())
			assert.Equal(t, "accounts", got["db.collection.name"].AsString())
			assert.Equal(t, tt.method, got["db.operation.name"].AsString())
			assert.NotContains(t, got, attribute.Key("error.type"))
			for k, v := range tt.want {
				assert.Equal(t, v, got[k], "attribute %s", k)
			}
		})
	}
}

func TestRepository_Telemetry_SpanIsChildOfCallersSpanAndParentOfStatements(t *testing.T) {
	o := newObserved(t)
	ctx, parent := o.tp.Tracer("caller").Start(context.Background(), "handler")
	a := account{Email: "ada@example.com", Name: "Ada"}
	require.NoError(t, o.accounts.Insert(ctx, o.pool, &a))
	_, err := o.accounts.Get(ctx, o.pool, a.ID)
	require.NoError(t, err)
	parent.End()

	var insert, get sdktrace.ReadOnlySpan
	for _, s := range o.ended() {
		switch s.Name() {
		case "pgrepo.Insert accounts":
			insert = s
		case "pgrepo.Get accounts":
			get = s
		}
	}
	require.NotNil(t, insert)
	require.NotNil(t, get)
	for _, s := range []sdktrace.ReadOnlySpan{insert, get} {
		assert.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID(), "%s: same trace", s.Name())
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "%s: child of the caller's span", s.Name())
	}
	assert.Equal(t, []trace.SpanContext{insert.SpanContext()}, o.statements.of("INSERT INTO"), "the INSERT statement runs under Insert's span")
	assert.Equal(t, []trace.SpanContext{get.SpanContext()}, o.statements.of("SELECT"), "the SELECT runs under Get's span")
}

func TestRepository_Telemetry_ErrorsSetStatusAndErrorType(t *testing.T) {
	o := newObserved(t)
	ctx := context.Background()
	a := account{Email: "ada@example.com", Name: "Ada"}
	require.NoError(t, o.accounts.Insert(ctx, o.pool, &a))
	stale := a
	a.Name = "Ada L"
	require.NoError(t, o.accounts.Update(ctx, o.pool, &a))
	o.ended()

	tests := []struct {
		name       string
		call       func() error
		errorType  string
		statusCode string // SQLSTATE, "" when no PostgreSQL error
	}{
		{"Get of a missing row", func() error { _, err := o.accounts.Get(ctx, o.pool, a.ID+100); return err }, "not_found", ""},
		{"Insert of a duplicate", func() error {
			return o.accounts.Insert(ctx, o.pool, &account{Email: "ada@example.com", Name: "Again"})
		}, "duplicate", "23505"},
		{"Update at a stale version", func() error { return o.accounts.Update(ctx, o.pool, &stale) }, "conflict", ""},
		{"Insert with a missing team", func() error {
			return o.accounts.Insert(ctx, o.pool, &account{Email: "fk@example.com", Name: "FK", TeamID: ptr(int64(999))})
		}, "foreign_key", "23503"},
		{"Patch breaking a check", func() error {
			_, err := o.accounts.Patch(ctx, o.pool, a.ID, map[string]any{"balance": -1})
			return err
		}, "check", "23514"},
		{"Patch with NULL into NOT NULL", func() error {
			_, err := o.accounts.Patch(ctx, o.pool, a.ID, map[string]any{"name": nil})
			return err
		}, "not_null", "23502"},
		{"Patch of an unknown column", func() error {
			_, err := o.accounts.Patch(ctx, o.pool, a.ID, map[string]any{"nope": 1})
			return err
		}, "invalid_column", ""},
		{"Delete on a nil DB", func() error { return o.accounts.Delete(ctx, nil, a.ID) }, "invalid", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Error(t, err)
			spans := o.ended()
			require.Len(t, spans, 1)
			s := spans[0]
			assert.Equal(t, otelcodes.Error, s.Status().Code)
			assert.Equal(t, err.Error(), s.Status().Description)
			got := spanAttrs(s)
			assert.Equal(t, tt.errorType, got["error.type"].AsString())
			if tt.statusCode != "" {
				assert.Equal(t, tt.statusCode, got["db.response.status_code"].AsString())
			} else {
				assert.NotContains(t, got, attribute.Key("db.response.status_code"))
			}
			require.Len(t, s.Events(), 1, "the error is recorded as an exception event")
			assert.Equal(t, "exception", s.Events()[0].Name)
		})
	}

	t.Run("Get of a missing row returns no rows", func(t *testing.T) {
		_, err := o.accounts.Get(ctx, o.pool, a.ID+100)
		require.ErrorIs(t, err, pgrepo.ErrNotFound)
		got := spanAttrs(o.ended()[0])
		assert.Equal(t, attribute.IntValue(0), got["db.response.returned_rows"])
	})
}

// durations returns the db.client.operation.duration data points collected
// now, keyed by db.operation.name and error.type ("" for success).
func durations(t *testing.T, reader *sdkmetric.ManualReader) map[[2]string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[[2]string]metricdata.HistogramDataPoint[float64]{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "db.client.operation.duration" {
				continue
			}
			assert.Equal(t, "s", m.Unit)
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				attrs := dp.Attributes
				op, _ := attrs.Value("db.operation.name")
				et, _ := attrs.Value("error.type")
				sys, _ := attrs.Value("db.system.name")
				assert.Equal(t, "postgresql", sys.AsString())
				out[[2]string{op.AsString(), et.AsString()}] = dp
			}
		}
	}
	return out
}

func TestRepository_Telemetry_DurationHistogramCountsCallsByOperationAndOutcome(t *testing.T) {
	o := newObserved(t)
	ctx := context.Background()
	a := account{Email: "ada@example.com", Name: "Ada"}
	require.NoError(t, o.accounts.Insert(ctx, o.pool, &a))
	for range 2 {
		_, err := o.accounts.Get(ctx, o.pool, a.ID)
		require.NoError(t, err)
	}
	_, err := o.accounts.Get(ctx, o.pool, a.ID+1)
	require.ErrorIs(t, err, pgrepo.ErrNotFound)

	got := durations(t, o.reader)
	assert.Equal(t, uint64(1), got[[2]string{"Insert", ""}].Count)
	assert.Equal(t, uint64(2), got[[2]string{"Get", ""}].Count)
	assert.Equal(t, uint64(1), got[[2]string{"Get", "not_found"}].Count)
	attrs := got[[2]string{"Get", ""}].Attributes
	table, _ := attrs.Value("db.collection.name")
	assert.Equal(t, "accounts", table.AsString())
	assert.Positive(t, got[[2]string{"Get", ""}].Sum)

	_, err = o.accounts.Get(ctx, o.pool, a.ID)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), durations(t, o.reader)[[2]string{"Get", ""}].Count, "the histogram moves with every call")
}

func TestInTx_Telemetry_SpanHasRetryEventsAndParentsTheTransactionsWork(t *testing.T) {
	o := newObserved(t)
	ctx, parent := o.tp.Tracer("caller").Start(context.Background(), "handler")
	calls := 0
	err := pgrepo.InTx(ctx, o.pool, pgrepo.TxOptions{
		IsoLevel: pgx.Serializable, BaseDelay: time.Microsecond,
		TracerProvider: o.tp, MeterProvider: o.mp,
	}, func(tx pgx.Tx) error {
		calls++
		// The context is the caller's, as closures over InTx usually have it.
		if err := o.teams.Insert(ctx, tx, &team{Name: "t"}); err != nil {
			return err
		}
		if calls < 3 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		return nil
	})
	require.NoError(t, err)
	parent.End()

	var txSpan sdktrace.ReadOnlySpan
	var inserts []sdktrace.ReadOnlySpan
	for _, s := range o.ended() {
		switch s.Name() {
		case "pgrepo.InTx":
			txSpan = s
		case "pgrepo.Insert teams":
			inserts = append(inserts, s)
		}
	}
	require.NotNil(t, txSpan)
	assert.Equal(t, parent.SpanContext().SpanID(), txSpan.Parent().SpanID(), "InTx's span is a child of the caller's")
	assert.Equal(t, trace.SpanKindInternal, txSpan.SpanKind())
	got := spanAttrs(txSpan)
	assert.Equal(t, "postgresql", got["db.system.name"].AsString())
	assert.Equal(t, "InTx", got["db.operation.name"].AsString())
	assert.Equal(t, attribute.IntValue(3), got["polystore.attempt"], "attempts that ran")
	assert.Equal(t, string(pgx.Serializable), got["polystore.tx.isolation"].AsString())
	assert.Equal(t, otelcodes.Unset, txSpan.Status().Code)

	var retries []int64
	for _, e := range txSpan.Events() {
		if e.Name != "retry" {
			continue
		}
		for _, kv := range e.Attributes {
			switch kv.Key {
			case "polystore.attempt":
				retries = append(retries, kv.Value.AsInt64())
			case "error.type":
				assert.Equal(t, "serialization_failure", kv.Value.AsString())
			}
		}
	}
	assert.Equal(t, []int64{2, 3}, retries, "one event per retry, naming the attempt it starts")

	require.Len(t, inserts, 3, "one Insert per attempt")
	for _, s := range inserts {
		assert.Equal(t, txSpan.SpanContext().SpanID(), s.Parent().SpanID(), "a repository call on the transaction is a child of InTx's span")
	}
	require.Len(t, o.statements.of("begin"), 3, "one BEGIN per attempt")
	for _, sc := range o.statements.of("begin") {
		assert.Equal(t, txSpan.SpanContext(), sc, "BEGIN runs under InTx's span")
	}
	assert.Len(t, o.statements.of("commit"), 1)
	for _, sc := range o.statements.of("commit") {
		assert.Equal(t, txSpan.SpanContext(), sc, "COMMIT runs under InTx's span")
	}

	assert.Equal(t, uint64(1), durations(t, o.reader)[[2]string{"InTx", ""}].Count)
}

func TestInTx_Telemetry_CallWithAContextOfItsOwnSpanStaysUnderThatSpan(t *testing.T) {
	o := newObserved(t)
	ctx := context.Background()
	var step trace.Span
	require.NoError(t, pgrepo.InTx(ctx, o.pool, pgrepo.TxOptions{TracerProvider: o.tp}, func(tx pgx.Tx) error {
		stepCtx, s := o.tp.Tracer("caller").Start(ctx, "step")
		step = s
		defer s.End()
		return o.teams.Insert(stepCtx, tx, &team{Name: "t"})
	}))
	var insert sdktrace.ReadOnlySpan
	for _, s := range o.ended() {
		if s.Name() == "pgrepo.Insert teams" {
			insert = s
		}
	}
	require.NotNil(t, insert)
	assert.Equal(t, step.SpanContext().SpanID(), insert.Parent().SpanID())
}

func TestInTx_Telemetry_GivingUpRecordsTheErrorType(t *testing.T) {
	o := newObserved(t)
	err := pgrepo.InTx(context.Background(), o.pool, pgrepo.TxOptions{MaxAttempts: 2, BaseDelay: time.Microsecond, TracerProvider: o.tp, MeterProvider: o.mp},
		func(pgx.Tx) error { return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"} })
	require.Error(t, err)
	spans := o.ended()
	require.Len(t, spans, 1)
	assert.Equal(t, otelcodes.Error, spans[0].Status().Code)
	got := spanAttrs(spans[0])
	assert.Equal(t, "deadlock", got["error.type"].AsString())
	assert.Equal(t, "40P01", got["db.response.status_code"].AsString())
	assert.Equal(t, attribute.IntValue(2), got["polystore.attempt"])
	assert.Equal(t, uint64(1), durations(t, o.reader)[[2]string{"InTx", "deadlock"}].Count)
}

func TestRepository_Telemetry_NoopProvidersRecordNothingAndChangeNothing(t *testing.T) {
	pool := servicetest.Postgres(t)
	_, err := pool.Exec(context.Background(), schema)
	require.NoError(t, err)
	repo, err := pgrepo.NewWithOptions[team, int64]("teams", pgrepo.Options{
		TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(),
	})
	require.NoError(t, err)
	ctx, parent := sdktrace.NewTracerProvider().Tracer("caller").Start(context.Background(), "handler")
	defer parent.End()
	tm := team{Name: "t"}
	require.NoError(t, repo.Insert(ctx, pool, &tm))
	got, err := repo.Get(ctx, pool, tm.ID)
	require.NoError(t, err)
	assert.Equal(t, tm, got)
}

// TestRepository_Telemetry_GlobalProvidersAreTheDefault installs global
// providers, so it does not run in parallel, and puts no-op ones back
// (the otel package cannot go back to its placeholder).
func TestRepository_Telemetry_GlobalProvidersAreTheDefault(t *testing.T) {
	pool := servicetest.Postgres(t)
	_, err := pool.Exec(context.Background(), schema)
	require.NoError(t, err)
	// Built before the providers are installed: the repository follows the
	// globals as they are when it runs.
	repo, err := pgrepo.New[team, int64]("teams")
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, repo.Insert(ctx, pool, &team{Name: "before"}))

	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
	})

	tm := team{Name: "after"}
	require.NoError(t, repo.Insert(ctx, pool, &tm))
	require.NoError(t, pgrepo.InTx(ctx, pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
		_, err := repo.Get(ctx, tx, tm.ID)
		return err
	}))

	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
	}
	assert.ElementsMatch(t, []string{"pgrepo.Insert teams", "pgrepo.Get teams", "pgrepo.InTx"}, names, "spans of the calls after the provider was installed")
	got := durations(t, reader)
	assert.Equal(t, uint64(1), got[[2]string{"Insert", ""}].Count)
	assert.Equal(t, uint64(1), got[[2]string{"Get", ""}].Count)
	assert.Equal(t, uint64(1), got[[2]string{"InTx", ""}].Count)
}

// poolPoints returns the pool metrics collected now: each data point's
// value keyed by metric name and its state or reason attribute.
func poolPoints(t *testing.T, reader *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			add := func(attrs attribute.Set, v float64) {
				key := m.Name
				if s, ok := attrs.Value("db.client.connection.state"); ok {
					key += "/" + s.AsString()
				}
				if s, ok := attrs.Value("polystore.pool.reason"); ok {
					key += "/" + s.AsString()
				}
				name, _ := attrs.Value("db.client.connection.pool.name")
				assert.NotEmpty(t, name.AsString(), "%s has the pool's name", key)
				out[key] = v
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes, float64(dp.Value))
				}
			case metricdata.Sum[float64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes, dp.Value)
				}
			}
		}
	}
	return out
}

func TestPoolMetrics_ObservesPoolStatisticsUntilUnregistered(t *testing.T) {
	base := servicetest.Postgres(t)
	cfg := base.Config()
	cfg.MaxConns = 3
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	defer pool.Close()
	reader := sdkmetric.NewManualReader()
	unregister, err := pgrepo.PoolMetrics(pool, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)

	ctx := context.Background()
	require.NoError(t, pool.Ping(ctx))
	held, err := pool.Acquire(ctx)
	require.NoError(t, err)
	got := poolPoints(t, reader)
	assert.Equal(t, 3.0, got["db.client.connection.max"])
	assert.Equal(t, 1.0, got["db.client.connection.count/used"], "the held connection")
	assert.GreaterOrEqual(t, got["polystore.pool.acquires"], 2.0, "Ping's and ours")
	assert.GreaterOrEqual(t, got["polystore.pool.connections.created"], 1.0)
	assert.Positive(t, got["polystore.pool.acquire.duration"])
	for _, name := range []string{
		"db.client.connection.count/idle", "db.client.connection.idle.min",
		"polystore.pool.connections.constructing", "polystore.pool.acquires.empty",
		"polystore.pool.acquires.empty.wait", "polystore.pool.acquires.canceled",
		"polystore.pool.connections.closed/max_lifetime", "polystore.pool.connections.closed/max_idle",
	} {
		assert.Contains(t, got, name)
	}
	acquires := got["polystore.pool.acquires"]

	held.Release()
	for range 3 {
		require.NoError(t, pool.Ping(ctx))
	}
	got = poolPoints(t, reader)
	assert.Equal(t, acquires+3, got["polystore.pool.acquires"], "the counters move")
	assert.Equal(t, 0.0, got["db.client.connection.count/used"])
	assert.GreaterOrEqual(t, got["db.client.connection.count/idle"], 1.0)

	// An acquire whose context has already ended while every connection is
	// held counts as canceled.
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	ended, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	_, err = pool.Acquire(ended)
	require.Error(t, err)
	got = poolPoints(t, reader)
	assert.Equal(t, 1.0, got["polystore.pool.acquires.canceled"])
	assert.Equal(t, 3.0, got["db.client.connection.count/used"])
	for _, c := range conns {
		c.Release()
	}

	require.NoError(t, unregister())
	assert.Empty(t, poolPoints(t, reader), "nothing is observed after unregister")
}

func TestPoolMetrics_NilPoolReturnsErrInvalid(t *testing.T) {
	unregister, err := pgrepo.PoolMetrics(nil, nil)
	require.ErrorIs(t, err, pgrepo.ErrInvalid)
	assert.Nil(t, unregister)
}

// TestPackage_ImportsTheOpenTelemetryAPIOnly keeps the SDK and exporters
// out of the library's dependencies: the application chooses them.
func TestPackage_ImportsTheOpenTelemetryAPIOnly(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	require.NoError(t, err)
	var otelPkgs []string
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.opentelemetry.io/") {
			otelPkgs = append(otelPkgs, pkg)
			assert.False(t, strings.HasPrefix(pkg, "go.opentelemetry.io/otel/sdk") || strings.HasPrefix(pkg, "go.opentelemetry.io/otel/exporters"),
				"pgrepo depends on %s", pkg)
		}
	}
	assert.Contains(t, otelPkgs, "go.opentelemetry.io/otel/trace", "the check sees the API")
}
