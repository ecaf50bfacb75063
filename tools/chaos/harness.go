package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/polystore/polystore/tools/loadgen/mixed"
)

// Tolerances of "back to its level before the fault", from the server's
// /metrics:
//
//   - goroutines, once the load has stopped and the harness's idle
//     connections are closed, polled for up to 15s: the pools keep a
//     goroutine or two per connection at most (the MongoDB driver's), and
//     after a fault they may hold a few more or fewer connections than
//     before; a leak of one goroutine per failed request, what a fault
//     would cause, is hundreds. So: at most 10 more than before the
//     scenario, and than before the first scenario, so that a slow leak
//     adding up across scenarios is caught too. (Observed: 5 more at
//     most, over the scenarios of several runs.)
//   - heap: go_memstats_next_gc_bytes is the GC's goal, twice the heap live
//     at the last collection (GOGC=100), read at the end of the load before
//     the fault and at the end of the load after it, so that both are
//     taken under the same load. It moves with the requests in flight and
//     the pools' buffers; observed: 6 to 9 MiB, at most 1.1 MiB more after
//     a fault than before on a warm server (2.2 MiB once in a first
//     scenario on a cold one: warmUp runs first since). A leak of a few KiB
//     per failed request (a scenario fails hundreds to thousands) is MiBs.
//     So: at most 1.2 times plus 2 MiB.
const (
	goroutineSlack = 10
	heapFactor     = 1.2
	heapSlack      = 2 << 20
)

// redisPrefix is the example server's default REDIS_PREFIX.
const redisPrefix = "polystore:example:"

// harness holds what a run started.
type harness struct {
	cfg     config
	logw    io.Writer
	dir     string
	pg      *pgCluster
	redis   *redisServer
	ferret  *ferretDB
	proxies *proxies
	server  *exampleServer // the one the scenarios run on
	serverB string         // its binary
	env     []string       // its environment
	check   *checker
	client  *http.Client
	cleanup []func()
	lastRec *mixed.Record // the last scenario's, for selfCheck
	// firstGoroutines is the server's idle goroutines before the first
	// scenario (after the warm-up): every scenario ends near it too.
	firstGoroutines float64
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.logw, "chaos: "+format+"\n", args...)
}

// setup builds the binaries and starts the private stores, the proxies and
// the example server.
func setup(ctx context.Context, cfg config, logw io.Writer) (_ *harness, err error) {
	h := &harness{cfg: cfg, logw: logw}
	defer func() {
		if err != nil {
			h.teardown()
		}
	}()
	if cfg.root == "" {
		if cfg.root, err = repoRoot(); err != nil {
			return nil, err
		}
	}
	h.dir, err = os.MkdirTemp("", "polystore-chaos-")
	if err != nil {
		return nil, err
	}
	// PostgreSQL's programs run as the postgres user when we are root: it
	// must be able to enter the directory.
	if err := os.Chmod(h.dir, 0o755); err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, func() {
		if cfg.keep {
			h.logf("logs kept in %s", h.dir)
			return
		}
		_ = os.RemoveAll(h.dir)
	})
	h.logf("building the example server and FerretDB (%s)", cfg.root)
	serverBin, ferretBin, err := buildBinaries(ctx, cfg.root, h.dir)
	if err != nil {
		return nil, err
	}
	h.serverB = serverBin

	h.logf("starting a private PostgreSQL, Redis and FerretDB in %s", h.dir)
	if h.pg, err = startPostgres(ctx, h.dir); err != nil {
		return nil, fmt.Errorf("the private PostgreSQL did not come up: %w", err)
	}
	h.cleanup = append(h.cleanup, func() { _ = h.pg.stop(context.Background()) })
	if h.redis, err = startRedis(ctx, h.dir); err != nil {
		return nil, fmt.Errorf("the private Redis did not come up: %w", err)
	}
	h.cleanup = append(h.cleanup, func() { h.redis.p.stop(syscall.SIGTERM, 10*time.Second) })
	if h.ferret, err = startFerretDB(ctx, ferretBin, h.dir, h.pg.url("ferretdb")); err != nil {
		return nil, fmt.Errorf("the private FerretDB did not come up: %w", err)
	}
	h.cleanup = append(h.cleanup, func() { h.ferret.p.stop(syscall.SIGTERM, 10*time.Second) })

	h.proxies, err = newProxies(map[string]string{
		storePostgres: fmt.Sprintf("127.0.0.1:%d", h.pg.port),
		storeRedis:    h.redis.addr(),
		storeMongo:    h.ferret.addr(),
	})
	if err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, h.proxies.stop)

	h.env = []string{
		"POSTGRES_URL=postgres://postgres@" + h.proxies.addr(storePostgres) + "/chaos?sslmode=disable",
		"REDIS_URL=redis://" + h.proxies.addr(storeRedis) + "/0",
		"MONGODB_URL=mongodb://" + h.proxies.addr(storeMongo) + "/?directConnection=true",
		// Each request its own client address would be closer to life; one
		// address with a limit nobody reaches keeps the limiter (and its
		// breaker) in every request's path without refusing the load.
		"RATE_LIMIT=1000000", "RATE_BURST=2000000",
		"BCRYPT_COST=4", // registrations and logins cost the CPU little
		"RECOVER_EVERY=1s", "SAGA_LEASE=3s",
		"LOG_LEVEL=warn",
	}
	h.logf("starting the example server")
	if h.server, err = startServer(ctx, "server", serverBin, h.dir, h.env); err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, func() { h.server.p.stop(syscall.SIGTERM, 30*time.Second) })

	h.client = &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.workers * 2}}
	pool, err := pgxpool.New(ctx, h.pg.url("chaos"))
	if err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, pool.Close)
	rdb := redis.NewClient(&redis.Options{Addr: h.redis.addr()})
	h.cleanup = append(h.cleanup, func() { _ = rdb.Close() })
	mc, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + h.ferret.addr() + "/?directConnection=true"))
	if err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, func() { _ = mc.Disconnect(context.Background()) })
	h.check = &checker{pg: pool, rdb: rdb, convs: mc.Database("polystore_example").Collection("conversations"),
		prefix: redisPrefix, client: h.client, orphansSeen: map[string]bool{}}
	return h, nil
}

// teardown stops everything setup started, last first.
func (h *harness) teardown() {
	for i := len(h.cleanup) - 1; i >= 0; i-- {
		h.cleanup[i]()
	}
	h.cleanup = nil
}

// runAll runs the selected scenarios, then the read measurement, and
// prints the tables.
func (h *harness) runAll(ctx context.Context, out io.Writer) (summary, error) {
	var sum summary
	var err error
	var list []scenario
	for _, s := range h.scenarios() {
		if h.cfg.short && !slices.Contains(shortScenarios, s.name) {
			continue
		}
		if h.cfg.only != nil && !h.cfg.only.MatchString(s.name) {
			continue
		}
		list = append(list, s)
	}
	if err := h.warmUp(ctx); err != nil {
		return sum, err
	}
	for i, s := range list {
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
		h.logf("scenario %d/%d: %s", i+1, len(list), s.name)
		r, err := h.runScenario(ctx, i, s)
		if err != nil {
			return sum, fmt.Errorf("scenario %s: %w", s.name, err)
		}
		for _, v := range r.violations {
			h.logf("  violation: %s", v)
		}
		for _, f := range r.failed {
			h.logf("  failed saga: %s %s %s: %s", f.ID, f.Name, f.Status, f.Error)
		}
		sum.rows = append(sum.rows, r)
		sum.violations += len(r.violations)
	}
	if h.cfg.reads > 0 && ctx.Err() == nil {
		reads, err := h.measureReads(ctx)
		if err != nil {
			return sum, fmt.Errorf("read measurement: %w", err)
		}
		sum.reads = reads
	}
	printTable(out, h.cfg, sum)
	if h.cfg.selfCheck && h.lastRec != nil && ctx.Err() == nil {
		if sum.missed, err = h.selfCheck(ctx, h.lastRec); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// warmUp sends the load for a few seconds before the first scenario,
// unrecorded, so that the first "before the fault" is a server whose pools,
// caches and heap have reached their steady state, as the others' are.
func (h *harness) warmUp(ctx context.Context) error {
	base, err := url.Parse(h.server.base)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return mixed.Run(wctx, mixed.Config{Base: base, Client: h.client, Workers: h.cfg.workers, Prefix: "warm"}, &mixed.Record{})
}

// row is one scenario's line of the table.
type row struct {
	name              string
	results           []mixed.Result
	faultAt, healedAt time.Time
	goroutines        [2]float64 // before, after
	heap              [2]float64
	failed            []sagaRow
	violations        violations
	recoveryTook      time.Duration
	checked           checked
}

// runScenario: idle gauges, load, fault, heal, load, stop the load, wait
// for recovery, check.
func (h *harness) runScenario(ctx context.Context, i int, s scenario) (row, error) {
	r := row{name: s.name}
	h.client.CloseIdleConnections()
	g0, err := h.check.gauges(ctx, h.server.base)
	if err != nil {
		return r, err
	}
	if h.firstGoroutines == 0 {
		h.firstGoroutines = g0.goroutines
	}
	base, err := url.Parse(h.server.base)
	if err != nil {
		return r, err
	}
	rec := &mixed.Record{}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan error, 1)
	go func() {
		loadDone <- mixed.Run(loadCtx, mixed.Config{Base: base, Client: h.client, Workers: h.cfg.workers,
			Prefix: fmt.Sprintf("s%d", i), Seed: uint64(i + 1)}, rec)
	}()

	sleep(ctx, h.cfg.before)
	before, err := h.check.gauges(ctx, h.server.base)
	if err != nil {
		return r, err
	}
	r.faultAt = time.Now()
	if s.fault.inject != nil {
		if err := s.fault.inject(ctx); err != nil {
			return r, fmt.Errorf("injecting %s: %w", s.fault.kind, err)
		}
	}
	sleep(ctx, time.Until(r.faultAt.Add(h.cfg.during)))
	if s.fault.heal != nil {
		if err := s.fault.heal(ctx); err != nil {
			return r, fmt.Errorf("healing %s: %w", s.fault.kind, err)
		}
	}
	r.healedAt = time.Now()
	sleep(ctx, h.cfg.after)
	after, err := h.check.gauges(ctx, h.server.base)
	if err != nil {
		return r, err
	}
	stopLoad()
	if err := <-loadDone; err != nil {
		return r, err
	}
	r.results = rec.Snapshot()
	h.lastRec = rec
	r.heap = [2]float64{before.heapGoal, after.heapGoal}

	// Recovery: every saga finished (its lease, 3s, expired and the loop,
	// every 1s, took it), within a bound that says it did not.
	start := time.Now()
	left, err := h.check.waitRecovered(ctx, 60*time.Second)
	if err != nil {
		return r, err
	}
	r.recoveryTook = time.Since(start)
	for _, s := range left {
		r.violations.add("saga %s (%s) still %s after recovery: %s", s.ID, s.Name, s.Status, s.Error)
	}
	if r.failed, err = h.failedSince(ctx); err != nil {
		return r, err
	}

	if r.checked, err = h.check.checkRecord(ctx, h.server.base, rec, &r.violations); err != nil {
		return r, err
	}
	if err := h.check.checkPairs(ctx, &r.violations); err != nil {
		return r, err
	}
	checkStatuses(s, r.results, r.faultAt, r.healedAt, &r.violations)
	h.noteUnavailable(r)
	h.noteByOp(r)

	// Goroutines back to their idle level, polled (the pools close what
	// they no longer need at their own pace).
	h.client.CloseIdleConnections()
	var g1 serverGauges
	_ = waitFor(ctx, 15*time.Second, func() error {
		g1, err = h.check.gauges(ctx, h.server.base)
		if err == nil && g1.goroutines > min(g0.goroutines, h.firstGoroutines)+goroutineSlack {
			return errors.New("goroutines above their level")
		}
		return err
	})
	if err != nil {
		return r, err
	}
	r.goroutines = [2]float64{g0.goroutines, g1.goroutines}
	checkGoroutines(h.firstGoroutines, g0.goroutines, g1.goroutines, &r.violations)
	if after.heapGoal > before.heapGoal*heapFactor+heapSlack {
		r.violations.add("heap goal: %.1f MiB under load before the fault, %.1f MiB after (more than %.1fx + %d MiB)",
			before.heapGoal/(1<<20), after.heapGoal/(1<<20), heapFactor, heapSlack>>20)
	}
	if h.server.p.exited() {
		return r, fmt.Errorf("the example server exited: %s", lastLines(readFile(h.server.log), 10))
	}
	return r, nil
}

// checkGoroutines checks the server's idle goroutines after a scenario
// against its level before it and against the first scenario's: a leak
// too slow to pass the slack in one scenario passes it as the scenarios
// add up.
func checkGoroutines(first, before, after float64, v *violations) {
	if after > before+goroutineSlack {
		v.add("goroutines: %.0f idle before the fault, %.0f after (more than %d above)", before, after, goroutineSlack)
	}
	if after > first+goroutineSlack {
		v.add("goroutines: %.0f idle before the first scenario, %.0f after this one (more than %d above): a leak across scenarios", first, after, goroutineSlack)
	}
}

// noteByOp logs each kind of request's count and latency during the fault
// (inFault, as the table counts them): the table's percentiles mix them.
func (h *harness) noteByOp(r row) {
	byOp := map[mixed.Op][]time.Duration{}
	for _, res := range r.results {
		if inFault(res, r.faultAt, r.healedAt) {
			byOp[res.Op] = append(byOp[res.Op], res.Latency)
		}
	}
	var parts []string
	for _, op := range mixed.Ops {
		if l := byOp[op]; len(l) > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (%s)", op, len(l), percentiles(l)))
		}
	}
	h.logf("  during the fault: %s", strings.Join(parts, ", "))
}

// noteUnavailable logs why the first 503 of each kind of request and phase
// was answered: the 503s are allowed, but the log says what caused them.
func (h *harness) noteUnavailable(r row) {
	seen := map[string]bool{}
	for _, res := range r.results {
		if res.Status != http.StatusServiceUnavailable {
			continue
		}
		key := fmt.Sprintf("%s, %s", res.Op, phase(res.Start, r.faultAt, r.healedAt))
		if !seen[key] {
			seen[key] = true
			h.logf("  503 to %s: %s", key, strings.TrimSpace(res.Error))
		}
	}
}

// failedSince returns the failed sagas not reported by an earlier scenario.
func (h *harness) failedSince(ctx context.Context) ([]sagaRow, error) {
	all, err := h.check.failedSagas(ctx)
	if err != nil {
		return nil, err
	}
	var out []sagaRow
	for _, s := range all {
		if !h.check.orphansSeen["saga:"+s.ID] {
			h.check.orphansSeen["saga:"+s.ID] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// checkStatuses applies the status rules to a scenario's answers.
func checkStatuses(s scenario, results []mixed.Result, faultAt, healedAt time.Time, v *violations) {
	counts := map[string]int{}
	first := map[string]string{} // the first answer's error, for the log
	for _, r := range results {
		var what string
		switch {
		case r.Status == 0:
			what = "no answer within 10s"
		case r.Status == http.StatusUnauthorized && r.SessionLost && s.redisData && !r.Start.Before(faultAt):
			// the restart lost the session the token named
		case r.Status >= 400 && r.Status < 500 && r.Status != http.StatusTooManyRequests:
			what = fmt.Sprintf("%d", r.Status)
		case r.Status >= 500 && r.Status != http.StatusServiceUnavailable:
			what = fmt.Sprintf("%d", r.Status)
		case r.Status == http.StatusServiceUnavailable && s.fault.store == storeRedis && !r.NeedsSession:
			what = "503 to a request that needs no session, with only Redis faulty"
		case r.Status == http.StatusServiceUnavailable && s.fault.store == "-":
			// Only here: the load before another scenario's fault still
			// meets connections the previous fault broke (a pool learns it
			// on use), which answer 503 once each.
			what = "503 with every store up"
		}
		if what != "" {
			key := fmt.Sprintf("%s: %s (%s)", r.Op, what, phase(r.Start, faultAt, healedAt))
			if counts[key] == 0 {
				first[key] = strings.TrimSpace(r.Error)
			}
			counts[key]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if first[k] != "" {
			v.add("status rule: %s, %d times; the first: %s", k, counts[k], first[k])
		} else {
			v.add("status rule: %s, %d times", k, counts[k])
		}
	}
}

// phase names when a request started.
func phase(t, faultAt, healedAt time.Time) string {
	switch {
	case t.Before(faultAt):
		return "before the fault"
	case t.Before(healedAt):
		return "during the fault"
	}
	return "after the healing"
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// readRow is one condition of the read measurement (item 5).
type readRow struct {
	name      string
	latencies []time.Duration // of the 200s
	statuses  map[int]int
}

// measureReads measures GET /users/{id} p99 with the cache disabled (a
// second server, CACHE_DISABLED=true, no fault) and on the cached server
// with Redis down and blackholed once its breaker is open, and with the
// cache on and no fault; the conditions alternate, twice, so that the
// machine's load weighs on each alike.
func (h *harness) measureReads(ctx context.Context) ([]readRow, error) {
	h.logf("read measurement: GET /users/{id}, cache disabled vs Redis down vs Redis blackholed")
	uncached, err := startServer(ctx, "server-uncached", h.serverB, h.dir, append(slices.Clone(h.env), "CACHE_DISABLED=true"))
	if err != nil {
		return nil, err
	}
	defer uncached.p.stop(syscall.SIGTERM, 30*time.Second)
	ids, err := h.readUsers(ctx, 50)
	if err != nil {
		return nil, err
	}
	rows := []readRow{{name: "cache disabled, no fault"}, {name: "Redis down (breaker open)"},
		{name: "Redis blackholed (breaker open)"}, {name: "cache on, no fault"}}
	for i := range rows {
		rows[i].statuses = map[int]int{}
	}
	down, hole := h.proxies.down(storeRedis), h.proxies.blackhole(storeRedis)
	for range 2 {
		h.readLoad(ctx, uncached.base, ids, h.cfg.reads, &rows[0])
		h.readLoad(ctx, h.server.base, ids, h.cfg.reads, &rows[3])
		for j, f := range []fault{down, hole} {
			if err := f.inject(ctx); err != nil {
				return nil, err
			}
			// Open the breaker first (5 failures): these reads are not measured.
			h.readLoad(ctx, h.server.base, ids, 2*time.Second, &readRow{statuses: map[int]int{}})
			h.readLoad(ctx, h.server.base, ids, h.cfg.reads, &rows[j+1])
			if err := f.heal(ctx); err != nil {
				return nil, err
			}
		}
	}
	return rows, nil
}

// readUsers registers n users on the cached server for the reads.
func (h *harness) readUsers(ctx context.Context, n int) ([]string, error) {
	base, err := url.Parse(h.server.base)
	if err != nil {
		return nil, err
	}
	var ids []string
	for i := range n {
		rec := &mixed.Record{}
		// One registration each, through the mixed load's client code.
		c, cancel := context.WithCancel(ctx)
		err := mixed.Run(c, mixed.Config{Base: base, Client: h.client, Workers: 1, MaxRequests: 1,
			Prefix: fmt.Sprintf("read%d", i)}, rec)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(rec.Users) != 1 {
			return nil, fmt.Errorf("registering read user %d: %v", i, rec.Snapshot())
		}
		ids = append(ids, rec.Users[0].ID)
	}
	return ids, nil
}

// readLoad reads the users round-robin from base with the harness's
// workers for d, into row.
func (h *harness) readLoad(ctx context.Context, base string, ids []string, d time.Duration, row *readRow) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type res struct {
		status int
		took   time.Duration
	}
	out := make(chan []res, h.cfg.workers)
	for w := range h.cfg.workers {
		go func() {
			var mine []res
			for i := w; ctx.Err() == nil && i < 10_000_000; i += h.cfg.workers {
				start := time.Now()
				status := 0
				resp, err := h.client.Get(base + "/users/" + ids[i%len(ids)])
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mine = append(mine, res{status, time.Since(start)})
			}
			out <- mine
		}()
	}
	for range h.cfg.workers {
		for _, r := range <-out {
			row.statuses[r.status]++
			if r.status == http.StatusOK {
				row.latencies = append(row.latencies, r.took)
			}
		}
	}
}
