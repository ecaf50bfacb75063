package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Attribute keys of the connection pool metrics.
const (
	attrPoolName   = attribute.Key("db.client.connection.pool.name")
	attrPoolState  = attribute.Key("db.client.connection.state")
	attrPoolReason = attribute.Key("polystore.pool.reason")
)

// PoolMetrics has mp (nil: the global provider) observe pool.Stat() at
// every collection, until unregister is called (call it before or after
// closing the pool; the statistics of a closed pool stay as they were).
// Every metric carries db.client.connection.pool.name, the pool's
// host:port/database (two pools on one database report under one name: give
// them two MeterProviders, or scopes, to tell them apart). The metrics, following the db.client.connection.*
// semantic conventions where one fits and named polystore.pool.* (as
// docrepo's) where none does:
//
//   - db.client.connection.count: open connections by
//     db.client.connection.state, used (acquired) or idle;
//   - db.client.connection.max and db.client.connection.idle.min: the
//     pool's MaxConns and MinIdleConns;
//   - polystore.pool.connections.constructing: connections being opened;
//   - polystore.pool.acquires: successful acquires (counter), and
//     polystore.pool.acquire.duration their total time in seconds;
//   - polystore.pool.acquires.empty: acquires that had to wait for a
//     connection, and polystore.pool.acquires.empty.wait the total of
//     those waits in seconds;
//   - polystore.pool.acquires.canceled: acquires whose context ended first;
//   - polystore.pool.connections.created: connections opened;
//   - polystore.pool.connections.closed: connections closed for their age,
//     by polystore.pool.reason max_lifetime or max_idle.
//
// pgxpool keeps totals, not one value per acquire, so the acquire times
// are counters of seconds (a rate gives the mean) rather than the
// db.client.connection.wait_time histogram. PoolMetrics returns an error
// wrapping ErrInvalid for a nil pool, and the provider's error, with
// nothing registered, when it cannot make an instrument or register the
// callback.
func PoolMetrics(pool *pgxpool.Pool, mp metric.MeterProvider) (unregister func() error, err error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: pgrepo.PoolMetrics: nil pool: nothing registered", ErrInvalid)
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	cfg := pool.Config() // a copy: read once, here
	name := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))) + "/" + cfg.ConnConfig.Database
	minIdle := int64(cfg.MinIdleConns)

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
	seconds := func(name, desc string) metric.Float64ObservableCounter {
		i, err := meter.Float64ObservableCounter(name, metric.WithUnit("s"), metric.WithDescription(desc))
		errs = append(errs, err)
		observables = append(observables, i)
		return i
	}
	count := upDown("db.client.connection.count", "{connection}", "The number of connections that are currently in state described by the state attribute.")
	maxConns := upDown("db.client.connection.max", "{connection}", "The maximum number of open connections allowed.")
	idleMin := upDown("db.client.connection.idle.min", "{connection}", "The minimum number of idle open connections allowed.")
	constructing := upDown("polystore.pool.connections.constructing", "{connection}", "Connections being opened.")
	acquires := counter("polystore.pool.acquires", "{acquire}", "Successful acquires of a connection from the pool.")
	acquireTime := seconds("polystore.pool.acquire.duration", "Total time of the successful acquires.")
	empty := counter("polystore.pool.acquires.empty", "{acquire}", "Successful acquires that waited for a connection: the pool had none idle.")
	emptyWait := seconds("polystore.pool.acquires.empty.wait", "Total time the empty acquires waited.")
	canceled := counter("polystore.pool.acquires.canceled", "{acquire}", "Acquires whose context ended before they got a connection.")
	created := counter("polystore.pool.connections.created", "{connection}", "Connections opened by the pool.")
	closed := counter("polystore.pool.connections.closed", "{connection}", "Connections closed by the pool for their age, by reason.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pgrepo.PoolMetrics: nothing registered: %w", err)
	}

	nameAttr := attrPoolName.String(name)
	byName := metric.WithAttributeSet(attribute.NewSet(nameAttr))
	idle := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolState.String("idle")))
	used := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolState.String("used")))
	lifetime := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolReason.String("max_lifetime")))
	idleTime := metric.WithAttributeSet(attribute.NewSet(nameAttr, attrPoolReason.String("max_idle")))
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := pool.Stat()
		o.ObserveInt64(count, int64(s.IdleConns()), idle)
		o.ObserveInt64(count, int64(s.AcquiredConns()), used)
		o.ObserveInt64(maxConns, int64(s.MaxConns()), byName)
		o.ObserveInt64(idleMin, minIdle, byName)
		o.ObserveInt64(constructing, int64(s.ConstructingConns()), byName)
		o.ObserveInt64(acquires, s.AcquireCount(), byName)
		o.ObserveFloat64(acquireTime, s.AcquireDuration().Seconds(), byName)
		o.ObserveInt64(empty, s.EmptyAcquireCount(), byName)
		o.ObserveFloat64(emptyWait, s.EmptyAcquireWaitTime().Seconds(), byName)
		o.ObserveInt64(canceled, s.CanceledAcquireCount(), byName)
		o.ObserveInt64(created, s.NewConnsCount(), byName)
		o.ObserveInt64(closed, s.MaxLifetimeDestroyCount(), lifetime)
		o.ObserveInt64(closed, s.MaxIdleDestroyCount(), idleTime)
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("pgrepo.PoolMetrics: nothing registered: %w", err)
	}
	return reg.Unregister, nil
}
