package docrepo_test

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
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
)

// observed is a repository whose spans and metrics go to in-memory
// recorders.
type observed struct {
	repo   *docrepo.Repository[article, bson.ObjectID]
	db     *mongo.Database
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
}

func observedArticles(t *testing.T) observed {
	t.Helper()
	o := observed{db: servicetest.Mongo(t), spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	o.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))
	var err error
	o.repo, err = docrepo.New[article, bson.ObjectID](o.db.Collection("articles"), docrepo.Options{TracerProvider: o.tp, MeterProvider: mp})
	require.NoError(t, err)
	return o
}

// ended returns the spans ended since the last call, and forgets them.
func (o observed) ended() []sdktrace.ReadOnlySpan {
	s := o.spans.Ended()
	o.spans.Reset()
	return s
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestTelemetry_EachCallMakesOneClientSpanWithDatabaseAttributes(t *testing.T) {
	ctx := context.Background()
	o := observedArticles(t)
	seeded := seed(t, o.repo, article{Title: "a", Author: "ann"}, article{Title: "b", Author: "ann"}, article{Title: "c", Author: "bob"})
	o.ended()

	// want holds the call-specific attributes: the documents returned or
	// written, the batch size.
	tests := []struct {
		op   string
		call func() error
		want map[attribute.Key]int64
	}{
		{"Insert", func() error { return o.repo.Insert(ctx, &article{Title: "d"}) }, map[attribute.Key]int64{"polystore.affected": 1}},
		{"InsertMany", func() error { return o.repo.InsertMany(ctx, []article{{Title: "e"}, {Title: "f"}}) },
			map[attribute.Key]int64{"polystore.affected": 2, "db.operation.batch.size": 2}},
		{"Get", func() error { _, err := o.repo.Get(ctx, seeded[0].ID); return err }, map[attribute.Key]int64{"db.response.returned_rows": 1}},
		{"FindOne", func() error {
			_, err := o.repo.FindOne(ctx, docrepo.Query{Filter: docrepo.Eq("author", "bob")})
			return err
		},
			map[attribute.Key]int64{"db.response.returned_rows": 1}},
		{"Find", func() error {
			_, err := o.repo.Find(ctx, docrepo.Query{Filter: docrepo.Eq("author", "ann")})
			return err
		},
			map[attribute.Key]int64{"db.response.returned_rows": 2}},
		{"Count", func() error { _, err := o.repo.Count(ctx, docrepo.All()); return err }, nil},
		{"Exists", func() error { _, err := o.repo.Exists(ctx, docrepo.Eq("author", "bob")); return err }, nil},
		{"Replace", func() error {
			a, err := o.repo.Get(context.Background(), seeded[1].ID)
			if err != nil {
				return err
			}
			o.ended()
			a.Title = "b2"
			return o.repo.Replace(ctx, &a)
		}, map[attribute.Key]int64{"polystore.affected": 1}},
		{"Modify", func() error {
			return o.repo.Modify(ctx, seeded[2].ID, func(a *article) error { a.Views++; return nil })
		}, map[attribute.Key]int64{"polystore.affected": 1}},
		{"Update", func() error { return o.repo.Update(ctx, seeded[0].ID, docrepo.NewUpdate().Inc("views", 1)) },
			map[attribute.Key]int64{"polystore.affected": 1}},
		{"UpdateMany", func() error {
			_, err := o.repo.UpdateMany(ctx, docrepo.Eq("author", "ann"), docrepo.NewUpdate().Inc("views", 1))
			return err
		}, map[attribute.Key]int64{"polystore.affected": 2}},
		{"Upsert", func() error {
			_, err := o.repo.Upsert(ctx, bson.NewObjectID(), docrepo.NewUpdate().Set("title", "u"))
			return err
		},
			map[attribute.Key]int64{"polystore.affected": 1}},
		{"Page", func() error { _, err := o.repo.Page(ctx, docrepo.PageRequest{Limit: 2}); return err },
			map[attribute.Key]int64{"db.response.returned_rows": 2}},
		{"OffsetPage", func() error { _, err := o.repo.OffsetPage(ctx, docrepo.OffsetRequest{PerPage: 3}); return err },
			map[attribute.Key]int64{"db.response.returned_rows": 3}},
		{"EnsureIndexes", func() error {
			_, err := o.repo.EnsureIndexes(ctx, docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "author"}}})
			return err
		}, nil},
		{"Aggregate", func() error {
			_, err := docrepo.Aggregate[bson.M](ctx, o.repo, docrepo.NewPipeline().Match(docrepo.Eq("author", "ann")))
			return err
		}, map[attribute.Key]int64{"db.response.returned_rows": 2}},
		{"Delete", func() error { return o.repo.Delete(ctx, seeded[2].ID) }, map[attribute.Key]int64{"polystore.affected": 1}},
		{"DeleteMany", func() error { _, err := o.repo.DeleteMany(ctx, docrepo.Eq("author", "ann")); return err },
			map[attribute.Key]int64{"polystore.affected": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			require.NoError(t, tt.call())

			spans := o.ended()
			require.Len(t, spans, 1, "one span per call, none for the calls it makes within")
			s := spans[0]
			assert.Equal(t, "docrepo."+tt.op+" articles", s.Name())
			assert.Equal(t, trace.SpanKindClient, s.SpanKind())
			assert.Equal(t, docrepo.ScopeName, s.InstrumentationScope().Name)
			assert.Equal(t, otelcodes.Unset, s.Status().Code, "success leaves the status unset")
			a := attrs(s)
			assert.Equal(t, "mongodb", a["db.system.name"].AsString())
			assert.Equal(t, o.db.Name(), a["db.namespace"].AsString())
			assert.Equal(t, "articles", a["db.collection.name"].AsString())
			assert.Equal(t, tt.op, a["db.operation.name"].AsString())
			assert.NotContains(t, a, attribute.Key("error.type"))
			for k, v := range tt.want {
				assert.Equal(t, v, a[k].AsInt64(), "%s", k)
			}
		})
	}
}

func TestTelemetry_SpanIsChildOfCallersAndParentOfCommands(t *testing.T) {
	ctx := context.Background()
	db := servicetest.Mongo(t)
	// A command monitor sees the context each command runs under, as
	// otelmongo's does: its command span is a child of the span found there.
	var mu sync.Mutex
	var commandParents []trace.SpanContext
	monitor := &event.CommandMonitor{Started: func(ctx context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "find" {
			mu.Lock()
			commandParents = append(commandParents, trace.SpanContextFromContext(ctx))
			mu.Unlock()
		}
	}}
	client, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{Monitor: monitor})
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	r, err := docrepo.New[article, bson.ObjectID](client.Database(db.Name()).Collection("articles"), docrepo.Options{TracerProvider: tp})
	require.NoError(t, err)
	a := article{Title: "t"}
	require.NoError(t, r.Insert(ctx, &a))
	spans.Reset()

	reqCtx, req := tp.Tracer("test").Start(ctx, "GET /articles/{id}")
	_, err = r.Get(reqCtx, a.ID)
	require.NoError(t, err)
	req.End()

	ended := spans.Ended()
	require.Len(t, ended, 2)
	get, root := ended[0], ended[1]
	require.Equal(t, "docrepo.Get articles", get.Name())
	assert.Equal(t, root.SpanContext().TraceID(), get.SpanContext().TraceID(), "one trace")
	assert.Equal(t, root.SpanContext().SpanID(), get.Parent().SpanID(), "the caller's span is the parent")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, commandParents)
	assert.Equal(t, get.SpanContext().SpanID(), commandParents[len(commandParents)-1].SpanID(),
		"the find command runs under the repository's span")
}

func TestTelemetry_ErrorsSetStatusAndErrorType(t *testing.T) {
	ctx := context.Background()
	o := observedArticles(t)
	a := seed(t, o.repo, article{Title: "a"})[0]
	accts, err := docrepo.New[account, string](o.db.Collection("accounts"), docrepo.Options{TracerProvider: o.tp})
	require.NoError(t, err)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	o.ended()

	tests := []struct {
		name, op, errorType string
		call                func() error
	}{
		{"missing id", "Get", "not_found", func() error { _, err := o.repo.Get(ctx, bson.NewObjectID()); return err }},
		{"taken id", "Insert", "duplicate", func() error { b := a; return o.repo.Insert(ctx, &b) }},
		{"stale version", "Replace", "conflict", func() error { b := a; b.Version = 7; return o.repo.Replace(ctx, &b) }},
		{"push to a string", "Update", "type_mismatch", func() error {
			return o.repo.Update(ctx, a.ID, docrepo.NewUpdate().Push("title", "x"))
		}},
		{"operator as a field", "Find", "invalid", func() error {
			_, err := o.repo.Find(ctx, docrepo.Query{Filter: docrepo.Eq("$where", 1)})
			return err
		}},
		{"zero string id", "Insert", "invalid_id", func() error { return accts.Insert(ctx, &account{Name: "x"}) }},
		{"canceled context", "Get", "canceled", func() error { _, err := o.repo.Get(canceled, a.ID); return err }},
		{"error of Modify's fn", "Modify", "_OTHER", func() error {
			return o.repo.Modify(ctx, a.ID, func(*article) error { return assert.AnError })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callErr := tt.call()
			require.Error(t, callErr)

			spans := o.ended()
			require.Len(t, spans, 1)
			s := spans[0]
			assert.Contains(t, s.Name(), "docrepo."+tt.op+" ")
			assert.Equal(t, otelcodes.Error, s.Status().Code)
			assert.Equal(t, callErr.Error(), s.Status().Description)
			assert.Equal(t, tt.errorType, attrs(s)["error.type"].AsString())
			require.Len(t, s.Events(), 1, "the error is recorded as an exception event")
			assert.Equal(t, "exception", s.Events()[0].Name)
		})
	}
}

func TestTelemetry_ModifyRecordsConflictRetriesAsEvents(t *testing.T) {
	ctx := context.Background()
	o := observedArticles(t)
	a := seed(t, o.repo, article{Title: "a"})[0]
	o.ended()

	calls := 0
	err := o.repo.Modify(ctx, a.ID, func(doc *article) error {
		calls++
		if calls == 1 {
			// Another writer gets there first: the replace conflicts.
			return o.repo.Update(context.Background(), a.ID, docrepo.NewUpdate().Inc("views", 10))
		}
		doc.Views++
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 2, calls)

	var modify sdktrace.ReadOnlySpan
	for _, s := range o.ended() {
		assert.NotContains(t, []string{"docrepo.Get articles", "docrepo.Replace articles"}, s.Name(),
			"Modify's reads and writes are its own span's")
		if s.Name() == "docrepo.Modify articles" {
			modify = s
		}
	}
	require.NotNil(t, modify)
	require.Len(t, modify.Events(), 1)
	e := modify.Events()[0]
	assert.Equal(t, "retry", e.Name)
	assert.Contains(t, e.Attributes, attribute.Int("polystore.attempt", 2))
	assert.Contains(t, e.Attributes, attribute.String("error.type", "conflict"))
	assert.Equal(t, otelcodes.Unset, modify.Status().Code)
}

// collect reads every metric of reader.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			require.Equal(t, docrepo.ScopeName, sm.Scope.Name)
			out[m.Name] = m
		}
	}
	return out
}

// matches reports whether set holds every attribute of want, where an
// empty value means that the key is absent.
func matches(set attribute.Set, want map[string]string) bool {
	for k, v := range want {
		got, ok := set.Value(attribute.Key(k))
		if v == "" && ok || v != "" && (!ok || got.AsString() != v) {
			return false
		}
	}
	return true
}

// histogramCount returns how many measurements of m match want.
func histogramCount(t *testing.T, m metricdata.Metrics, want map[string]string) uint64 {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is a float64 histogram", m.Name)
	var n uint64
	for _, dp := range h.DataPoints {
		if matches(dp.Attributes, want) {
			n += dp.Count
		}
	}
	return n
}

// sum returns the sum of m's points that match want.
func sum(t *testing.T, m metricdata.Metrics, want map[string]string) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is an int64 sum", m.Name)
	var n int64
	for _, dp := range s.DataPoints {
		if matches(dp.Attributes, want) {
			n += dp.Value
		}
	}
	return n
}

func TestTelemetry_DurationHistogramCountsCallsByOperationAndOutcome(t *testing.T) {
	ctx := context.Background()
	o := observedArticles(t)
	a := seed(t, o.repo, article{Title: "a"})[0]

	for range 2 {
		_, err := o.repo.Get(ctx, a.ID)
		require.NoError(t, err)
	}
	_, err := o.repo.Get(ctx, bson.NewObjectID())
	require.ErrorIs(t, err, docrepo.ErrNotFound)

	m, ok := collect(t, o.reader)["db.client.operation.duration"]
	require.True(t, ok)
	assert.Equal(t, "s", m.Unit)
	base := map[string]string{"db.system.name": "mongodb", "db.namespace": o.db.Name(), "db.collection.name": "articles"}
	with := func(kv ...string) map[string]string {
		w := map[string]string{}
		for k, v := range base {
			w[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			w[kv[i]] = kv[i+1]
		}
		return w
	}
	assert.Equal(t, uint64(2), histogramCount(t, m, with("db.operation.name", "Get", "error.type", "")), "successes carry no error.type")
	assert.Equal(t, uint64(1), histogramCount(t, m, with("db.operation.name", "Get", "error.type", "not_found")))
	assert.Equal(t, uint64(1), histogramCount(t, m, with("db.operation.name", "InsertMany", "error.type", "")), "the seed")

	_, err = o.repo.Get(ctx, a.ID)
	require.NoError(t, err)
	m = collect(t, o.reader)["db.client.operation.duration"]
	assert.Equal(t, uint64(3), histogramCount(t, m, with("db.operation.name", "Get", "error.type", "")), "the counts move")
}

// commandSpans records, for each find command, whether it ran under a
// valid span context.
type commandSpans struct {
	mu      sync.Mutex
	parents []trace.SpanContext
}

func (c *commandSpans) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(ctx context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "find" {
			c.mu.Lock()
			c.parents = append(c.parents, trace.SpanContextFromContext(ctx))
			c.mu.Unlock()
		}
	}}
}

func (c *commandSpans) last() trace.SpanContext {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.parents) == 0 {
		return trace.SpanContext{}
	}
	return c.parents[len(c.parents)-1]
}

func TestTelemetry_NoProviderInstalledAddsNoAllocationToGet(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations over many round trips")
	}
	ctx := context.Background()
	r, db := articles(t)
	a := seed(t, r, article{Title: "t"})[0]
	coll := db.Collection("articles")

	// Both sides allocate what the driver does. AllocsPerRun counts the
	// whole process, and the driver's background monitoring allocates
	// too, only ever adding: so the two sides are measured in alternate
	// rounds and the least of each is compared, which background work can
	// raise but not lower. A span on the global placeholder provider would
	// cost three or four more.
	const runs, rounds = 100, 5
	raw, repo := math.Inf(1), math.Inf(1)
	for range rounds {
		raw = min(raw, testing.AllocsPerRun(runs, func() {
			var got article
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: a.ID}}).Decode(&got); err != nil {
				t.Fatal(err)
			}
		}))
		repo = min(repo, testing.AllocsPerRun(runs, func() {
			if _, err := r.Get(ctx, a.ID); err != nil {
				t.Fatal(err)
			}
		}))
	}
	assert.LessOrEqual(t, repo, raw+1, "Get allocates what FindOne+Decode does")
}

// This test changes otel's global providers: it must not run in parallel
// with others, and it leaves no-op providers installed.
func TestTelemetry_GlobalProvidersByDefaultAndNothingUntilOneIsInstalled(t *testing.T) {
	ctx := context.Background()
	db := servicetest.Mongo(t)
	var commands commandSpans
	client, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{Monitor: commands.monitor()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database(db.Name()).Collection("articles")
	r, err := docrepo.New[article, bson.ObjectID](coll, docrepo.Options{})
	require.NoError(t, err)
	a := article{Title: "t"}
	require.NoError(t, r.Insert(ctx, &a))

	// Nothing installed: the command runs under the caller's context as
	// is, no span of docrepo's in it.
	_, err = r.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.False(t, commands.last().IsValid(), "no span is started while no provider is installed")

	// A pool monitor on the global provider, whose connection is opened
	// before any provider is installed.
	early, err := mongo.Connect(options.Client().ApplyURI(servicetest.MongoURL(t)).SetPoolMonitor(docrepo.NewPoolMonitor(nil, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = early.Disconnect(context.Background()) })
	require.NoError(t, docrepo.Health(ctx, early))

	// Installed after New, as happens when the repository is built first:
	// the repository's next calls use it.
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
	})
	_, err = r.Get(ctx, a.ID)
	require.NoError(t, err)
	ended := spans.Ended()
	require.Len(t, ended, 1)
	assert.Equal(t, "docrepo.Get articles", ended[0].Name())
	assert.Equal(t, ended[0].SpanContext().SpanID(), commands.last().SpanID())
	m, ok := collect(t, reader)["db.client.operation.duration"]
	require.True(t, ok)
	assert.Equal(t, uint64(1), histogramCount(t, m, map[string]string{"db.operation.name": "Get"}))

	// The early monitor's account predates the provider, and is whole.
	pool := collect(t, reader)["db.client.connection.count"]
	assert.Equal(t, int64(1), sum(t, pool, map[string]string{"db.client.connection.state": "idle"}),
		"the connection opened before the provider was installed is counted")

	// A client that Connect makes now records its pool to the global
	// provider.
	other, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{})
	require.NoError(t, err)
	require.NoError(t, other.Disconnect(ctx))
	assert.Contains(t, collect(t, reader), "polystore.pool.connections.created")

	// The API's no-op provider, global or given, turns spans off.
	for _, opts := range []docrepo.Options{{}, {TracerProvider: tracenoop.NewTracerProvider()}} {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		r, err := docrepo.New[article, bson.ObjectID](coll, opts)
		require.NoError(t, err)
		_, err = r.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.False(t, commands.last().IsValid())
	}
}
