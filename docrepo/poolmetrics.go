package docrepo

import (
	"context"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Attribute keys of the connection pool metrics.
const (
	attrPoolName    = attribute.Key("db.client.connection.pool.name")
	attrPoolState   = attribute.Key("db.client.connection.state")
	attrPoolReason  = attribute.Key("polystore.pool.reason")
	poolStateIdle   = "idle"
	poolStateUsed   = "used"
	poolReasonOther = "unknown"
)

// NewPoolMonitor returns a driver pool monitor that records the statistics
// of the client's connection pools (one per server) as OpenTelemetry
// metrics of mp, then hands each event to next. mp nil means the global
// provider; next may be nil. Install it with
// options.Client().SetPoolMonitor(...) on a client of your own; Connect
// installs one itself (see Config.MeterProvider). The metrics, each with
// db.client.connection.pool.name (the server's host:port):
//
//   - db.client.connection.count: open connections, by
//     db.client.connection.state (idle, used);
//   - db.client.connection.max and db.client.connection.idle.min: the
//     pool's maxPoolSize (when not unlimited) and minPoolSize;
//   - db.client.connection.pending_requests: check-outs waiting for a
//     connection;
//   - db.client.connection.create_time, .wait_time and .use_time:
//     histograms, in seconds, of establishing a connection, of waiting for
//     one at check-out, and of holding one until check-in;
//   - db.client.connection.timeouts: check-outs that timed out;
//   - polystore.pool.connections.created and .closed, and
//     polystore.pool.checkout.failures: counters, the last two by
//     polystore.pool.reason (the driver's: idle, stale, connectionError,
//     poolClosed, timeout, error).
//
// The first four are observed from the monitor's own account of every
// connection, so they are right however late a provider is installed; it
// stops being observed once every pool of the client has closed
// (Disconnect).
func NewPoolMonitor(mp metric.MeterProvider, next *event.PoolMonitor) *event.PoolMonitor {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := &poolMonitor{next: next, pools: map[string]*poolState{}}
	m.instruments(mp.Meter(ScopeName))
	return &event.PoolMonitor{Event: m.event}
}

// poolMonitor keeps an account of the connections of a client's pools.
type poolMonitor struct {
	next *event.PoolMonitor

	meter                               metric.Meter
	count, max, idleMin, pending        metric.Int64ObservableUpDownCounter
	createTime, waitTime, useTime       metric.Float64Histogram
	timeouts, created, closed, failures metric.Int64Counter
	observables                         []metric.Observable

	// mu guards the account. It is never held while calling into the
	// provider's registration, which a collection may hold while it runs
	// observe; regMu orders registering and unregistering observe.
	mu           sync.Mutex
	pools        map[string]*poolState
	open         int // pools created and not closed
	regMu        sync.Mutex
	registration metric.Registration
}

// poolState is the account of one server's pool.
type poolState struct {
	name         metric.MeasurementOption
	idle, used   metric.MeasurementOption
	conns        map[int64]time.Time // zero: idle; else when checked out
	usedCount    int64
	max, minIdle int64
	pending      int64
	closed       bool
	counted      bool // its creation is in poolMonitor.open
}

// instruments creates the instruments; one the provider cannot make is
// reported to otel's error handler and replaced by a no-op one.
func (m *poolMonitor) instruments(meter metric.Meter) {
	m.meter = meter
	upDown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		i, err := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err)
			return metricnoop.Int64ObservableUpDownCounter{}
		}
		m.observables = append(m.observables, i)
		return i
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		i, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
		if err != nil {
			otel.Handle(err)
			return metricnoop.Float64Histogram{}
		}
		return i
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		i, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err)
			return metricnoop.Int64Counter{}
		}
		return i
	}
	m.count = upDown("db.client.connection.count", "{connection}", "The number of connections that are currently in state described by the state attribute.")
	m.max = upDown("db.client.connection.max", "{connection}", "The maximum number of open connections allowed.")
	m.idleMin = upDown("db.client.connection.idle.min", "{connection}", "The minimum number of idle open connections allowed.")
	m.pending = upDown("db.client.connection.pending_requests", "{request}", "The number of current pending requests for an open connection.")
	m.createTime = histogram("db.client.connection.create_time", "The time it took to create a new connection.")
	m.waitTime = histogram("db.client.connection.wait_time", "The time it took to obtain an open connection from the pool.")
	m.useTime = histogram("db.client.connection.use_time", "The time between borrowing a connection and returning it to the pool.")
	m.timeouts = counter("db.client.connection.timeouts", "{timeout}", "The number of connection timeouts that have occurred trying to obtain a connection from the pool.")
	m.created = counter("polystore.pool.connections.created", "{connection}", "Connections opened by the pool.")
	m.closed = counter("polystore.pool.connections.closed", "{connection}", "Connections closed by the pool, by reason.")
	m.failures = counter("polystore.pool.checkout.failures", "{request}", "Check-outs that got no connection, by reason.")
}

// event updates the account with e and records what e measures, then
// passes e on.
func (m *poolMonitor) event(e *event.PoolEvent) {
	m.record(e)
	if m.next != nil && m.next.Event != nil {
		m.next.Event(e)
	}
}

func (m *poolMonitor) record(e *event.PoolEvent) {
	m.account(e)
	if e.Type == event.ConnectionPoolCreated || e.Type == event.ConnectionPoolClosed {
		m.syncRegistration()
	}
}

// syncRegistration has observe called at collections while a pool is open,
// and not after, so that a disconnected client's monitor can be collected.
func (m *poolMonitor) syncRegistration() {
	m.regMu.Lock()
	defer m.regMu.Unlock()
	m.mu.Lock()
	open := m.open
	m.mu.Unlock()
	switch {
	case open > 0 && m.registration == nil:
		reg, err := m.meter.RegisterCallback(m.observe, m.observables...)
		if err != nil {
			otel.Handle(err)
			return
		}
		m.registration = reg
	case open == 0 && m.registration != nil:
		if err := m.registration.Unregister(); err != nil {
			otel.Handle(err)
		}
		m.registration = nil
	}
}

func (m *poolMonitor) account(e *event.PoolEvent) {
	ctx := context.Background()
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[e.Address]
	if p == nil {
		name := attrPoolName.String(e.Address)
		p = &poolState{
			name:  metric.WithAttributeSet(attribute.NewSet(name)),
			idle:  metric.WithAttributeSet(attribute.NewSet(name, attrPoolState.String(poolStateIdle))),
			used:  metric.WithAttributeSet(attribute.NewSet(name, attrPoolState.String(poolStateUsed))),
			conns: map[int64]time.Time{},
		}
		m.pools[e.Address] = p
	}
	switch e.Type {
	case event.ConnectionPoolCreated:
		if e.PoolOptions != nil {
			p.max, p.minIdle = int64(e.PoolOptions.MaxPoolSize), int64(e.PoolOptions.MinPoolSize)
		}
		if p.closed || !p.counted {
			p.closed, p.counted = false, true
			m.open++
		}
	case event.ConnectionPoolClosed:
		if !p.closed && p.counted {
			p.closed = true
			m.open--
		}
	case event.ConnectionCreated:
		p.conns[e.ConnectionID] = time.Time{}
		m.created.Add(ctx, 1, p.name)
	case event.ConnectionReady:
		m.createTime.Record(ctx, e.Duration.Seconds(), p.name)
	case event.ConnectionClosed:
		if out, ok := p.conns[e.ConnectionID]; ok {
			if !out.IsZero() {
				p.usedCount--
			}
			delete(p.conns, e.ConnectionID)
		}
		m.closed.Add(ctx, 1, p.name, reasonOption(e.Reason))
	case event.ConnectionCheckOutStarted:
		p.pending++
	case event.ConnectionCheckOutFailed:
		p.pending--
		if e.Reason == event.ReasonTimedOut {
			m.timeouts.Add(ctx, 1, p.name)
		}
		m.failures.Add(ctx, 1, p.name, reasonOption(e.Reason))
	case event.ConnectionCheckedOut:
		p.pending--
		m.waitTime.Record(ctx, e.Duration.Seconds(), p.name)
		if out, ok := p.conns[e.ConnectionID]; ok && out.IsZero() {
			p.conns[e.ConnectionID] = time.Now()
			p.usedCount++
		}
	case event.ConnectionCheckedIn:
		if out, ok := p.conns[e.ConnectionID]; ok && !out.IsZero() {
			m.useTime.Record(ctx, time.Since(out).Seconds(), p.name)
			p.conns[e.ConnectionID] = time.Time{}
			p.usedCount--
		}
	}
}

// reasonOption is the attribute of the driver's reason for a close or a
// failed check-out.
func reasonOption(reason string) metric.AddOption {
	if reason == "" {
		reason = poolReasonOther
	}
	return metric.WithAttributes(attrPoolReason.String(reason))
}

// observe reports the account of every pool that is open.
func (m *poolMonitor) observe(_ context.Context, o metric.Observer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.pools {
		if p.closed {
			continue
		}
		o.ObserveInt64(m.count, int64(len(p.conns))-p.usedCount, p.idle)
		o.ObserveInt64(m.count, p.usedCount, p.used)
		if p.max > 0 {
			o.ObserveInt64(m.max, p.max, p.name)
		}
		o.ObserveInt64(m.idleMin, p.minIdle, p.name)
		o.ObserveInt64(m.pending, p.pending, p.name)
	}
	return nil
}
