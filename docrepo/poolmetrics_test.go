package docrepo_test

import (
	"context"
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
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestPoolMetrics_FollowTheClientsConnections(t *testing.T) {
	ctx := context.Background()
	db := servicetest.Mongo(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var mu sync.Mutex
	seen := map[string]int{}
	chained := &event.PoolMonitor{Event: func(e *event.PoolEvent) {
		mu.Lock()
		seen[e.Type]++
		mu.Unlock()
	}}
	client, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{MaxPoolSize: 4, MinPoolSize: 1, MeterProvider: mp, PoolMonitor: chained})
	require.NoError(t, err)
	r, err := docrepo.New[article, bson.ObjectID](client.Database(db.Name()).Collection("articles"), docrepo.Options{})
	require.NoError(t, err)
	a := article{Title: "t"}
	require.NoError(t, r.Insert(ctx, &a))

	// Eight goroutines on four connections: some wait for one.
	const workers, each = 8, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				_, err := r.Get(ctx, a.ID)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	m := collect(t, reader)
	var pool map[string]string // every point
	created := sum(t, m["polystore.pool.connections.created"], pool)
	assert.GreaterOrEqual(t, created, int64(1))
	assert.LessOrEqual(t, created, int64(4), "no more than maxPoolSize")
	checkouts := histogramCount(t, m["db.client.connection.wait_time"], pool)
	assert.GreaterOrEqual(t, checkouts, uint64(workers*each+1), "a check-out per operation (Connect's ping and the insert too)")
	assert.Equal(t, checkouts, histogramCount(t, m["db.client.connection.use_time"], pool), "every connection came back")
	assert.GreaterOrEqual(t, histogramCount(t, m["db.client.connection.create_time"], pool), uint64(1))
	assert.Equal(t, int64(0), sum(t, m["db.client.connection.count"], map[string]string{"db.client.connection.state": "used"}), "all checked in")
	closed := int64(0)
	if c, ok := m["polystore.pool.connections.closed"]; ok {
		closed = sum(t, c, pool)
	}
	assert.Equal(t, created-closed, sum(t, m["db.client.connection.count"], map[string]string{"db.client.connection.state": "idle"}))
	assert.Equal(t, int64(4), sum(t, m["db.client.connection.max"], pool))
	assert.Equal(t, int64(1), sum(t, m["db.client.connection.idle.min"], pool))
	assert.Equal(t, int64(0), sum(t, m["db.client.connection.pending_requests"], pool))
	var names []string
	for _, dp := range m["db.client.connection.count"].Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("db.client.connection.pool.name")
		names = append(names, v.AsString())
	}
	assert.Contains(t, names, "127.0.0.1:27017", "the pool is named by its server")

	mu.Lock()
	assert.Equal(t, int(checkouts), seen[event.ConnectionCheckedOut], "the chained monitor got every event too")
	mu.Unlock()

	// After Disconnect every connection is closed and the pool is no
	// longer observed.
	require.NoError(t, client.Disconnect(ctx))
	m = collect(t, reader)
	assert.Equal(t, sum(t, m["polystore.pool.connections.created"], pool), sum(t, m["polystore.pool.connections.closed"], pool))
	assert.Positive(t, sum(t, m["polystore.pool.connections.closed"], map[string]string{"polystore.pool.reason": "poolClosed"}))
	if c, ok := m["db.client.connection.count"]; ok {
		assert.Empty(t, c.Data.(metricdata.Sum[int64]).DataPoints)
	}
}

func TestPoolMetrics_NoopProviderInstallsOnlyTheCallersMonitor(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	events := 0
	chained := &event.PoolMonitor{Event: func(*event.PoolEvent) { mu.Lock(); events++; mu.Unlock() }}
	client, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{MeterProvider: metricnoop.NewMeterProvider(), PoolMonitor: chained})
	require.NoError(t, err)
	require.NoError(t, client.Disconnect(ctx))
	mu.Lock()
	defer mu.Unlock()
	assert.Positive(t, events, "the caller's monitor is installed without the metrics")
}

func TestNewPoolMonitor_OnAClientOfYourOwn(t *testing.T) {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	client, err := mongo.Connect(options.Client().ApplyURI(servicetest.MongoURL(t)).SetPoolMonitor(docrepo.NewPoolMonitor(mp, nil)))
	require.NoError(t, err)
	defer client.Disconnect(ctx)
	require.NoError(t, docrepo.Health(ctx, client))
	require.NoError(t, docrepo.Health(ctx, client))

	m := collect(t, reader)
	assert.Equal(t, uint64(2), histogramCount(t, m["db.client.connection.wait_time"], nil), "a check-out per ping")
	assert.Equal(t, int64(1), sum(t, m["db.client.connection.count"], map[string]string{"db.client.connection.state": "idle"}))
	assert.Equal(t, int64(100), sum(t, m["db.client.connection.max"], nil), "the driver's default maxPoolSize")
}
