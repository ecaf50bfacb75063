package cacherepo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Attribute keys of the connection pool metrics, as pgrepo's.
const (
	attrPoolName   = attribute.Key("db.client.connection.pool.name")
	attrPoolState  = attribute.Key("db.client.connection.state")
	attrPoolReason = attribute.Key("polystore.pool.reason")
)

// PoolMetrics has mp (nil: the global provider) observe client.PoolStats()
// at every collection, until unregister is called (call it before or after
// closing the client). For a *redis.ClusterClient or *redis.Ring the
// statistics are go-redis's sums over the nodes' pools. Every metric
// carries db.client.connection.pool.name: a *redis.Client's host:port/db,
// the comma-separated addresses of a Cluster's seed nodes or a Ring's
// shards, "redis" for another client (two clients under one name: give them
// two MeterProviders to tell them apart). The metrics follow pgrepo's
// PoolMetrics: db.client.connection.* semantic conventions where one fits,
// polystore.pool.* where none does:
//
//   - db.client.connection.count: open connections by
//     db.client.connection.state, idle or used (TotalConns − IdleConns);
//   - db.client.connection.pending_requests: requests waiting for a
//     connection now;
//   - db.client.connection.timeouts: waits for a connection that timed out
//     (the client's PoolTimeout);
//   - polystore.pool.hits and polystore.pool.misses: takes from the pool
//     that found an idle connection, and those that found none (and
//     dialled or waited);
//   - polystore.pool.acquires.empty: takes that had to wait for a
//     connection, and polystore.pool.acquires.empty.wait the total of those
//     waits in seconds (as pgrepo's);
//   - polystore.pool.connections.closed: connections closed by
//     polystore.pool.reason stale (idle or too old, go-redis's StaleConns)
//     or unusable (found broken when taken).
//
// go-redis keeps totals, not one value per take, so the wait time is a
// counter of seconds (a rate gives the mean) rather than the
// db.client.connection.wait_time histogram. The pub/sub connections of a
// Cache with Near or Lock are outside the pool. PoolMetrics returns an
// error wrapping ErrInvalid for a nil client, and the provider's error,
// with nothing registered, when it cannot make an instrument or register
// the callback.
func PoolMetrics(client redis.UniversalClient, mp metric.MeterProvider) (unregister func() error, err error) {
	if v := reflect.ValueOf(client); client == nil || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return nil, fmt.Errorf("%w: cacherepo.PoolMetrics: nil client: nothing registered", ErrInvalid)
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(ScopeName)
	var errs []error
	var observables []metric.Observable
	upDown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		i, err := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		observables = append(observables, i)
		return i
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		i, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		observables = append(observables, i)
		return i
	}
	count := upDown("db.client.connection.count", "{connection}", "The number of connections that are currently in state described by the state attribute.")
	pending := upDown("db.client.connection.pending_requests", "{request}", "The number of current pending requests for an open connection.")
	timeouts := counter("db.client.connection.timeouts", "{timeout}", "The number of connection timeouts that have occurred trying to obtain a connection from the pool.")
	hits := counter("polystore.pool.hits", "{acquire}", "Takes from the pool that found an idle connection.")
	misses := counter("polystore.pool.misses", "{acquire}", "Takes from the pool that found no idle connection.")
	empty := counter("polystore.pool.acquires.empty", "{acquire}", "Takes that waited for a connection.")
	emptyWait, err := meter.Float64ObservableCounter("polystore.pool.acquires.empty.wait", metric.WithUnit("s"),
		metric.WithDescription("Total time the takes that waited for a connection waited."))
	errs = append(errs, err)
	observables = append(observables, emptyWait)
	closed := counter("polystore.pool.connections.closed", "{connection}", "Connections closed by the pool, by reason: stale or unusable.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cacherepo.PoolMetrics: nothing registered: %w", err)
	}

	nameAttr := attrPoolName.String(poolName(client))
	byName := metric.WithAttributeSet(attribute.NewSet(nameAttr))
	idle := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolState.String("idle")))
	used := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolState.String("used")))
	stale := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolReason.String("stale")))
	unusable := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolReason.String("unusable")))
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := client.PoolStats()
		if s == nil {
			return nil
		}
		o.ObserveInt64(count, int64(s.IdleConns), idle)
		o.ObserveInt64(count, int64(s.TotalConns)-int64(s.IdleConns), used)
		o.ObserveInt64(pending, int64(s.PendingRequests), byName)
		o.ObserveInt64(timeouts, int64(s.Timeouts), byName)
		o.ObserveInt64(hits, int64(s.Hits), byName)
		o.ObserveInt64(misses, int64(s.Misses), byName)
		o.ObserveInt64(empty, int64(s.WaitCount), byName)
		o.ObserveFloat64(emptyWait, float64(s.WaitDurationNs)/1e9, byName)
		o.ObserveInt64(closed, int64(s.StaleConns), stale)
		o.ObserveInt64(closed, int64(s.Unusable), unusable)
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("cacherepo.PoolMetrics: nothing registered: %w", err)
	}
	return reg.Unregister, nil
}

// poolName is the db.client.connection.pool.name of client's pool.
func poolName(client redis.UniversalClient) string {
	switch c := client.(type) {
	case *redis.Client:
		o := c.Options()
		return o.Addr + "/" + strconv.Itoa(o.DB)
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	case *redis.Ring:
		addrs := make([]string, 0, len(c.Options().Addrs))
		for _, a := range c.Options().Addrs {
			addrs = append(addrs, a)
		}
		slices.Sort(addrs)
		return strings.Join(addrs, ",")
	}
	return "redis"
}
