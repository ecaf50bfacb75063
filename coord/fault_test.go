package coord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests of this file break the connections between the coordinator and
// PostgreSQL for real, with an in-process TCP proxy in front of the server
// or pg_terminate_backend on the test's own database, and check that Run's
// error says exactly where the saga stands.

// A proxyFault is what the proxy does to a message from the client that
// contains its marker (a saga id: the first to carry it is the insert of
// that saga's record, alone or in the first batch of its first step's
// transaction when that step is a TxAction; the second is then that
// transaction's COMMIT batch, with the step's record).
type proxyFault int

const (
	// faultDrop swallows the message and cuts the connection: the server
	// never sees the statement.
	faultDrop proxyFault = iota + 1
	// faultLoseReply forwards the message, waits for the server's whole
	// answer (ReadyForQuery, so the statement committed), swallows it and
	// cuts the connection.
	faultLoseReply
)

// pgProxy forwards TCP connections to PostgreSQL and breaks them on demand.
type pgProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]bool
	refuse bool // accepted connections are closed at once
	fault  proxyFault
	marker []byte
	// refuseAfterFault makes the proxy refuse new connections once the
	// fault has struck.
	refuseAfterFault bool
	// hole makes the proxy accept new connections and never answer them
	// (a blackholed server) until heal; holeAfterFault sets it once the
	// fault has struck.
	hole, holeAfterFault bool
	held                 int // connections accepted into the hole
	skip                 int // messages carrying the marker to let through first
}

func newPgProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
	})
	return p
}

func (p *pgProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse, hole := p.refuse, p.hole
		if hole {
			// Held open, unanswered, until heal or cut closes it.
			p.conns[client] = true
			p.held++
		}
		p.mu.Unlock()
		if refuse {
			_ = client.Close()
			continue
		}
		if hole {
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns[client], p.conns[server] = true, true
		p.mu.Unlock()
		lost := make(chan struct{}) // closed when the client's answer is to be swallowed
		var once sync.Once
		go p.toServer(client, server, lost, &once)
		go p.toClient(server, client, lost)
	}
}

// toServer copies client → server, applying the armed fault.
func (p *pgProxy) toServer(client, server net.Conn, lost chan struct{}, once *sync.Once) {
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			fault := p.fault
			hit := fault != 0 && bytes.Contains(buf[:n], p.marker)
			if hit && p.skip > 0 {
				p.skip--
				hit = false
			}
			if hit {
				p.fault = 0
				if p.refuseAfterFault {
					p.refuse = true
				}
				if p.holeAfterFault {
					p.hole = true
				}
			}
			p.mu.Unlock()
			if hit && fault == faultDrop {
				p.closePair(client, server)
				return
			}
			if hit {
				once.Do(func() { close(lost) })
			}
			if _, err := server.Write(buf[:n]); err != nil {
				p.closePair(client, server)
				return
			}
		}
		if err != nil {
			p.closePair(client, server)
			return
		}
	}
}

// readyForQuery is the message that ends the server's answer to a
// statement: 'Z', length 5, then the transaction status.
var readyForQuery = []byte{'Z', 0, 0, 0, 5}

// toClient copies server → client; once lost is closed, it swallows the
// server's answer up to ReadyForQuery, then cuts the connection.
func (p *pgProxy) toClient(server, client net.Conn, lost chan struct{}) {
	buf := make([]byte, 64<<10)
	var swallowed []byte
	for {
		n, err := server.Read(buf)
		if n > 0 {
			select {
			case <-lost:
				swallowed = append(swallowed, buf[:n]...)
				if bytes.Contains(swallowed, readyForQuery) {
					p.closePair(client, server)
					return
				}
			default:
				if _, err := client.Write(buf[:n]); err != nil {
					p.closePair(client, server)
					return
				}
			}
		}
		if err != nil {
			p.closePair(client, server)
			return
		}
	}
}

func (p *pgProxy) closePair(a, b net.Conn) {
	_ = a.Close()
	_ = b.Close()
	p.mu.Lock()
	delete(p.conns, a)
	delete(p.conns, b)
	p.mu.Unlock()
}

// cut closes every connection through the proxy.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// blackholeAfter makes the proxy apply fault to the client message carrying
// marker that follows skip others carrying it, then blackhole every new
// connection until heal.
func (p *pgProxy) blackholeAfter(fault proxyFault, marker string, skip int) {
	p.armAfter(fault, marker, false, skip)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holeAfterFault = true
}

// blackhole makes the proxy hold every new connection without answering
// until heal (cut breaks the old ones, so that the pool dials new ones).
func (p *pgProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole = true
}

// heal ends the blackhole and closes the connections it held, as a server
// coming back would find them broken.
func (p *pgProxy) heal() {
	p.cut()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole, p.holeAfterFault = false, false
}

// holding reports whether the proxy blackholes connections and how many it
// has accepted into the hole.
func (p *pgProxy) holding() (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hole, p.held
}

func (p *pgProxy) setRefuse(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = v
}

// arm makes the proxy apply fault to the first client message carrying
// marker.
func (p *pgProxy) arm(fault proxyFault, marker string, refuseAfter bool) {
	p.armAfter(fault, marker, refuseAfter, 0)
}

// armAfter makes the proxy apply fault to the client message carrying
// marker that follows skip others carrying it.
func (p *pgProxy) armAfter(fault proxyFault, marker string, refuseAfter bool, skip int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.marker, p.refuseAfterFault, p.skip = fault, []byte(marker), refuseAfter, skip
}

// proxiedPool returns a pool on the fixture's database through the proxy.
// It never pings: every statement meets the connection as it is.
func proxiedPool(t *testing.T, f *fixture, p *pgProxy) *pgxpool.Pool {
	t.Helper()
	cfg := f.pool.Config()
	host, port, err := net.SplitHostPort(p.ln.Addr().String())
	require.NoError(t, err)
	portN, err := strconv.ParseUint(port, 10, 16)
	require.NoError(t, err)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Fallbacks = host, uint16(portN), nil
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func pgTarget(t *testing.T, f *fixture) string {
	t.Helper()
	cc := f.pool.Config().ConnConfig
	return net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
}

func TestRun_BrokenConnectionErrorSaysWhetherTheSagaIsLogged(t *testing.T) {
	// refuseFrom returns a hook that makes PostgreSQL unreachable before the
	// first try of step.
	refuseFrom := func(step string) func(p *pgProxy) func(crashPoint) bool {
		return func(p *pgProxy) func(crashPoint) bool {
			var once sync.Once
			return func(pt crashPoint) bool {
				if pt.Stage == stageBeforeAction && pt.Step == step {
					once.Do(func() {
						p.setRefuse(true)
						p.cut()
					})
				}
				return false
			}
		}
	}
	tests := []struct {
		name string
		// actionFirst runs the saga without its PostgreSQL step, so that
		// its first step is an Action and its record's insert goes alone.
		actionFirst bool
		// prepare breaks the way to PostgreSQL before Run; hook may break
		// it at a boundary of the run.
		prepare func(p *pgProxy, pool *pgxpool.Pool, id string)
		hook    func(p *pgProxy) func(crashPoint) bool
		wantErr error // nil: the saga succeeded
		logged  bool  // the saga is in the log after Run
	}{
		{
			name: "database unreachable before the first transaction",
			prepare: func(p *pgProxy, pool *pgxpool.Pool, _ string) {
				p.setRefuse(true)
				pool.Reset()
			},
			wantErr: ErrNotStarted,
		},
		{
			name: "first transaction lost on its way",
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.arm(faultDrop, id, false)
			},
			logged: true, // rolled back; the record inserted alone, the step tried again
		},
		{
			name: "answer to the first transaction's statements lost",
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.arm(faultLoseReply, id, false)
			},
			logged: true,
		},
		{
			name: "first transaction lost, then the database unreachable",
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.arm(faultDrop, id, true)
			},
			wantErr: ErrNotStarted, // it never reached COMMIT
		},
		{
			name: "COMMIT carrying the record lost on its way",
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.armAfter(faultDrop, id, false, 1)
			},
			logged: true, // inserted again on a fresh connection: a failed try, tried again
		},
		{
			name: "answer of the COMMIT carrying the record lost",
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.armAfter(faultLoseReply, id, false, 1)
			},
			logged: true, // the fresh connection finds the run's own record, past the step
		},
		{
			name: "COMMIT carrying the record lost, then the database unreachable",
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.armAfter(faultDrop, id, true, 1)
			},
			wantErr: ErrOutcomeUnknown,
		},
		{
			name: "answer of the COMMIT carrying the record lost, then the database unreachable",
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.armAfter(faultLoseReply, id, true, 1)
			},
			wantErr: ErrOutcomeUnknown,
			logged:  true,
		},
		{
			name:    "database unreachable from the first TxAction on",
			hook:    refuseFrom(stepCreateUser),
			wantErr: ErrNotStarted,
		},
		{
			name:    "database unreachable from the pivot on",
			hook:    refuseFrom(stepActivate),
			wantErr: ErrIncomplete,
			logged:  true,
		},
		{
			name:        "first step an Action: insert lost on its way",
			actionFirst: true,
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.arm(faultDrop, id, false)
			},
			logged: true, // inserted again on a fresh connection, then run
		},
		{
			name:        "first step an Action: answer of the committed insert lost",
			actionFirst: true,
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.arm(faultLoseReply, id, false)
			},
			logged: true, // the fresh connection finds the run's own record
		},
		{
			name:        "first step an Action: insert lost, then the database unreachable",
			actionFirst: true,
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.arm(faultDrop, id, true)
			},
			wantErr: ErrOutcomeUnknown,
		},
		{
			name:        "first step an Action: answer of the committed insert lost, then the database unreachable",
			actionFirst: true,
			prepare: func(p *pgProxy, _ *pgxpool.Pool, id string) {
				p.arm(faultLoseReply, id, true)
			},
			wantErr: ErrOutcomeUnknown,
			logged:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			p := newPgProxy(t, pgTarget(t, f))
			pool := proxiedPool(t, f, p)
			opts := Options{Owner: "proxied", LeaseDuration: testLease}
			if tt.hook != nil {
				opts.crashAt = tt.hook(p)
			}
			def := f.definition
			done := allApplied
			if tt.actionFirst {
				def = func() *Definition[regState] {
					d := f.definition()
					return Define(d.name, d.steps[1:]...)
				}
				done = effects{Conversation: true, Cached: true}
			}
			c, err := New(context.Background(), pool, opts)
			require.NoError(t, err)
			h, err := Register(c, def())
			require.NoError(t, err)
			id := "u-" + strconv.FormatUint(rand.Uint64(), 36)
			if tt.prepare != nil {
				tt.prepare(p, pool, id)
			}

			info, err := h.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, StatusSucceeded, info.Status)
				assert.Equal(t, done, f.effects(t, id))
			} else {
				require.ErrorIs(t, err, tt.wantErr)
				for _, other := range []error{ErrNotStarted, ErrIncomplete, ErrOutcomeUnknown, ErrCompensated, ErrFailed} {
					if other != tt.wantErr {
						assert.NotErrorIs(t, err, other)
					}
				}
			}
			// The log, read directly.
			direct, err := New(context.Background(), f.pool, Options{Owner: "direct", LeaseDuration: testLease})
			require.NoError(t, err)
			hd, err := Register(direct, def())
			require.NoError(t, err)
			_, err = direct.Get(context.Background(), id)
			if tt.logged {
				require.NoError(t, err, "the saga is in the log")
			} else {
				require.ErrorIs(t, err, ErrNotFound)
				// Only the first TxAction may have been called: its
				// transaction, which carried the record, did not commit.
				calls := f.allCalls(id)
				delete(calls, stepCreateUser)
				assert.Equal(t, map[string]int{
					stepWelcome: 0, stepActivate: 0, stepCache: 0,
					opName(stepCreateUser, true): 0, opName(stepWelcome, true): 0, opName(stepActivate, true): 0, opName(stepCache, true): 0,
				}, calls, "no other step ran")
				assert.Equal(t, noneLeft, f.effects(t, id))
			}

			// Once PostgreSQL is back, what the error told the caller to do
			// finishes the saga: nothing (recovery) or Run again.
			p.setRefuse(false)
			switch {
			case errors.Is(tt.wantErr, ErrIncomplete):
				info = recoverUntilFinal(t, direct, id)
			case tt.wantErr != nil:
				info, err = hd.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
				require.NoError(t, err)
			}
			assert.Equal(t, StatusSucceeded, info.Status)
			assert.Equal(t, done, f.effects(t, id))
			assert.Equal(t, 1, f.callCount(id, stepWelcome, false), "the MongoDB step ran once")
		})
	}
}

// TestRun_PostgresBlackholedAfterACutRunReturnsWithinItsSettleBudget cuts a
// run where it must then wait on the log (the COMMIT that carried the
// saga's record, whose outcome it settles on fresh connections; the pivot,
// cut by the caller's deadline, after which it gives the saga back) and
// blackholes PostgreSQL from then on: Run must return, with the error that
// says where the saga stands, while the blackhole lasts, having tried the
// log (a connection in the hole); once PostgreSQL answers again, what the
// error advises finishes the saga.
func TestRun_PostgresBlackholedAfterACutRunReturnsWithinItsSettleBudget(t *testing.T) {
	tests := []struct {
		name string
		// cut arms the fault and the blackhole before Run; hook, if any,
		// is Options.crashAt.
		cut      func(p *pgProxy, id string)
		hook     func(p *pgProxy) func(crashPoint) bool
		deadline bool // Run's ctx has a deadline, as a server request's has
		wantErr  error
		logged   bool // the saga is in the log after Run
	}{
		{
			name:    "COMMIT carrying the record lost on its way",
			cut:     func(p *pgProxy, id string) { p.blackholeAfter(faultDrop, id, 1) },
			wantErr: ErrOutcomeUnknown,
		},
		{
			name:    "answer of the COMMIT carrying the record lost",
			cut:     func(p *pgProxy, id string) { p.blackholeAfter(faultLoseReply, id, 1) },
			wantErr: ErrOutcomeUnknown,
			logged:  true,
		},
		{
			name: "pivot cut by the caller's deadline",
			hook: func(p *pgProxy) func(crashPoint) bool {
				var once sync.Once
				return func(pt crashPoint) bool {
					if pt.Stage == stageBeforeAction && pt.Step == stepActivate {
						once.Do(func() {
							p.blackhole()
							p.cut()
						})
					}
					return false
				}
			},
			deadline: true,
			wantErr:  ErrIncomplete, // its release is best effort: recovery takes it at the lease's end
			logged:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			p := newPgProxy(t, pgTarget(t, f))
			pool := proxiedPool(t, f, p)
			opts := Options{Owner: "blackholed", LeaseDuration: testLease, SettleTimeout: 300 * time.Millisecond}
			if tt.hook != nil {
				opts.crashAt = tt.hook(p)
			}
			c, err := New(context.Background(), pool, opts)
			require.NoError(t, err)
			h, err := Register(c, f.definition())
			require.NoError(t, err)
			id := "u-" + strconv.FormatUint(rand.Uint64(), 36)
			if tt.cut != nil {
				tt.cut(p, id)
			}
			ctx := context.Background()
			if tt.deadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Second)
				defer cancel()
			}

			type result struct {
				info Info
				err  error
			}
			done := make(chan result, 1)
			go func() {
				info, err := h.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
				done <- result{info, err}
			}()
			var res result
			select {
			case res = <-done:
			case <-time.After(time.Minute): // bounds the test only: the budget is 300ms
				p.heal()
				<-done
				t.Fatal("Run did not return while PostgreSQL was blackholed")
			}
			hole, held := p.holding()
			require.True(t, hole, "PostgreSQL was blackholed while Run returned")
			assert.Positive(t, held, "Run tried the log in the blackhole")
			if tt.wantErr == ErrOutcomeUnknown {
				// Settling tries each on a fresh connection: without the
				// budget all settleTries of them would sit in the blackhole,
				// besides the step's own.
				assert.Less(t, held, 1+settleTries, "the budget ended settling before its tries ran out")
			}
			require.ErrorIs(t, res.err, tt.wantErr)
			for _, other := range []error{ErrNotStarted, ErrIncomplete, ErrOutcomeUnknown, ErrCompensated, ErrFailed} {
				if other != tt.wantErr {
					assert.NotErrorIs(t, res.err, other)
				}
			}

			// PostgreSQL answers again: the log, read directly, and what the
			// error advises (recovery, or Run again with the same id).
			p.heal()
			direct, err := New(context.Background(), f.pool, Options{Owner: "direct", LeaseDuration: testLease})
			require.NoError(t, err)
			hd, err := Register(direct, f.definition())
			require.NoError(t, err)
			_, err = direct.Get(context.Background(), id)
			if tt.logged {
				require.NoError(t, err, "the saga is in the log")
			} else {
				require.ErrorIs(t, err, ErrNotFound)
			}
			info := recoverUntilFinalOrAbsent(t, direct, id)
			if !tt.logged {
				info, err = hd.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
				require.NoError(t, err)
			}
			assert.Equal(t, StatusSucceeded, info.Status)
			assert.Equal(t, allApplied, f.effects(t, id))
			assert.Equal(t, 1, f.callCount(id, stepWelcome, false), "the MongoDB step ran once")
		})
	}
}

// recoverUntilFinalOrAbsent is recoverUntilFinal for a saga that may not be
// in the log: then it returns the zero Info.
func recoverUntilFinalOrAbsent(t *testing.T, c *Coordinator, id string) Info {
	t.Helper()
	if _, err := c.Get(context.Background(), id); errors.Is(err, ErrNotFound) {
		return Info{}
	}
	return recoverUntilFinal(t, c, id)
}

// TestRun_ConnectionsCutRepeatedlyEveryOutcomeIsTrue runs sagas from several
// goroutines while another connection keeps terminating the backends of the
// test's database, then checks each Run's error against the log and the
// stores.
func TestRun_ConnectionsCutRepeatedlyEveryOutcomeIsTrue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, err := New(ctx, f.pool, Options{Owner: "chaos", LeaseDuration: testLease})
	require.NoError(t, err)
	d := f.definition()
	for i := range d.steps {
		d.steps[i].Retry = RetryPolicy{Attempts: 6, Backoff: 2 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	}
	h, err := Register(c, d)
	require.NoError(t, err)

	killer, err := pgx.ConnectConfig(ctx, f.pool.Config().ConnConfig)
	require.NoError(t, err)
	t.Cleanup(func() { _ = killer.Close(context.Background()) })
	stop := make(chan struct{})
	var kills atomic.Int64
	killed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				killed <- nil
				return
			case <-time.After(time.Duration(5+rand.IntN(40)) * time.Millisecond):
			}
			var n int64
			err := killer.QueryRow(ctx, `select count(pg_terminate_backend(pid)) from pg_stat_activity
				where datname = current_database() and pid <> pg_backend_pid()`).Scan(&n)
			if err != nil {
				killed <- err
				return
			}
			kills.Add(n)
		}
	}()

	const runners, perRunner = 8, 8
	type result struct {
		id  string
		err error
	}
	results := make(chan result, runners*perRunner)
	var wg sync.WaitGroup
	for r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perRunner {
				id := fmt.Sprintf("c%d-%d", r, i)
				_, err := h.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
				results <- result{id, err}
			}
		}()
	}
	wg.Wait()
	close(stop)
	require.NoError(t, <-killed)
	close(results)
	f.pool.Reset() // the pool's connections may be terminated ones
	t.Logf("%d backends terminated", kills.Load())

	counts := map[string]int{}
	for res := range results {
		id := res.id
		switch {
		case res.err == nil:
			counts["succeeded"]++
			info, err := c.Get(ctx, id)
			require.NoError(t, err)
			if info.Status == StatusRunning {
				// Its final record, which Run does not wait for, was cut
				// too: recovery replays the last step and finishes it.
				counts["final record lost"]++
				info = recoverUntilFinal(t, c, id)
			}
			assert.Equal(t, StatusSucceeded, info.Status, id)
			assert.Equal(t, allApplied, f.effects(t, id), id)
		case errors.Is(res.err, ErrNotStarted):
			counts["not started"]++
			_, err := c.Get(ctx, id)
			assert.ErrorIs(t, err, ErrNotFound, id)
			assert.Equal(t, noneLeft, f.effects(t, id), id)
			// The first step, a TxAction, may have been called: its
			// transaction, which carried the record, did not commit.
			assert.Zero(t, f.callCount(id, stepWelcome, false), id)
		case errors.Is(res.err, ErrIncomplete):
			counts["incomplete"]++
			_, err := c.Get(ctx, id)
			require.NoError(t, err, "%s: an incomplete saga is in the log", id)
			info := recoverUntilFinal(t, c, id)
			assertFinal(t, f, id, info.Status)
		case errors.Is(res.err, ErrCompensated):
			counts["compensated"]++
			info, err := c.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, StatusCompensated, info.Status, id)
			assert.Equal(t, noneLeft, f.effects(t, id), id)
		case errors.Is(res.err, ErrFailed):
			counts["failed"]++
			info, err := c.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, StatusFailed, info.Status, id)
		case errors.Is(res.err, ErrOutcomeUnknown):
			counts["unknown"]++
			info, err := h.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
			if !errors.Is(err, ErrFailed) {
				require.NoError(t, ignoreCompensated(err), id)
			}
			assertFinal(t, f, id, info.Status)
		default:
			t.Errorf("%s: Run's error has no outcome: %v", id, res.err)
		}
	}
	t.Logf("outcomes: %v", counts)
}

func ignoreCompensated(err error) error {
	if errors.Is(err, ErrCompensated) {
		return nil
	}
	return err
}

// assertFinal checks the stores of a saga that ended in status.
func assertFinal(t *testing.T, f *fixture, id string, status Status) {
	t.Helper()
	switch status {
	case StatusSucceeded:
		assert.Equal(t, allApplied, f.effects(t, id), id)
	case StatusCompensated:
		assert.Equal(t, noneLeft, f.effects(t, id), id)
	case StatusFailed:
	default:
		t.Errorf("%s: not final: %s", id, status)
	}
}

// durableLog makes the fixture's database keep, in coord_saga_durable, each
// saga's row as of its last write committed with synchronous_commit on: what
// a PostgreSQL crash would leave of it, since a record committed without the
// WAL flush can be lost while every durable one before it stays (the WAL is
// sequential). The trigger reads the setting of the writing transaction, so
// it sees what coord really asked for.
func durableLog(t *testing.T, f *fixture) {
	t.Helper()
	require.NoError(t, Migrate(context.Background(), f.pool))
	_, err := f.pool.Exec(context.Background(), `
create table coord_saga_durable (like coord_saga);
create function coord_saga_keep_durable() returns trigger language plpgsql as $$
begin
	if current_setting('synchronous_commit') <> 'off' then
		delete from coord_saga_durable where id = new.id;
		insert into coord_saga_durable select new.*;
	end if;
	return null;
end $$;
create trigger coord_saga_keep_durable after insert or update on coord_saga
	for each row execute function coord_saga_keep_durable();`)
	require.NoError(t, err)
}

// loseNonDurable puts the saga id back as its last durable write left it,
// with its lease expired, as a PostgreSQL crash and restart would (the
// history is left as it is: it only tells the timeline). It returns the
// status it had before and the one restored.
func loseNonDurable(t *testing.T, f *fixture, id string) (before, after Status) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, f.pool.QueryRow(ctx, `select status from coord_saga where id = $1`, id).Scan(&before))
	require.NoError(t, f.pool.QueryRow(ctx, `select status from coord_saga_durable where id = $1`, id).Scan(&after),
		"the record's insert is durable")
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `delete from coord_saga where id = $1`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `insert into coord_saga select * from coord_saga_durable where id = $1`, id)
		return err
	})
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `update coord_saga set lease_expires = now() - interval '1 second' where id = $1`, id)
	require.NoError(t, err)
	return before, after
}

// TestRecover_PostgresLosingTheNonDurableRecordsEndsConsistent cuts a run
// at each boundary it crosses (and once lets it finish), then puts the
// saga's record back to its last durable write, as a PostgreSQL crash would
// that loses the records committed without waiting for the WAL flush; a
// new coordinator recovers it: the three stores must end consistent, with
// the outcome the run had reached. In the registration saga the records
// after the MongoDB step (the next one is a TxAction) and after the
// retriable Redis step are not durable, and so is the compensation of the
// MongoDB step (the PostgreSQL one is left to compensate).
func TestRecover_PostgresLosingTheNonDurableRecordsEndsConsistent(t *testing.T) {
	scenarios := []struct {
		name   string
		setup  func(f *fixture)
		status Status
		want   effects
		// lost is the status the record falls back to when the finished
		// run's non-durable records are lost.
		lost Status
	}{
		{"success", func(*fixture) {}, StatusSucceeded, allApplied, StatusRunning},
		{"pivot fails", func(f *fixture) { f.fail(stepActivate, false, -1) }, StatusCompensated, noneLeft, StatusCompensated},
		{"mongo step fails after its write", func(f *fixture) { f.failAfterWrite(stepWelcome, -1) }, StatusCompensated, noneLeft, StatusCompensated},
		{"retriable step fails twice", func(f *fixture) { f.fail(stepCache, false, 2) }, StatusSucceeded, allApplied, StatusRunning},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			durableLog(t, f)
			sc.setup(f)
			points := boundaries(t, f, "probe")
			require.NotEmpty(t, points)
			recoverer, rh := f.coordinator(t, Options{Owner: "recoverer", LeaseDuration: testLease})

			// i == len(points): the run is not cut, it returns its outcome.
			for i := 0; i <= len(points); i++ {
				id := fmt.Sprintf("lost-%d", i)
				name := "finished"
				if i < len(points) {
					name = fmt.Sprintf("%02d %s", i, points[i])
				}
				t.Run(name, func(t *testing.T) {
					sc.setup(f) // the same failures as the probe met, so the same boundaries
					n := 0
					cc, crashed := f.coordinator(t, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(crashPoint) bool {
						n++
						return n == i+1
					}})
					_, err := crashed.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
					if i < len(points) {
						require.ErrorIs(t, err, errCrashed)
					} else {
						require.True(t, err == nil || errors.Is(err, ErrCompensated), "Run: %v", err)
					}
					// The final record, which Run does not wait for, is
					// written before the crash (the one that loses it is
					// TestRun_FinalRecordLostAfterRunReturnedIsRecovered).
					cc.settleFinals(context.Background())

					if _, err := recoverer.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
						before, after := loseNonDurable(t, f, id)
						if i == len(points) {
							assert.Equal(t, sc.status, before, "the run finished")
							assert.Equal(t, sc.lost, after, "what the last durable write left")
						}
					}
					info := finishCut(t, f, recoverer, rh, id)
					assert.Equal(t, sc.status, info.Status)
					assert.Equal(t, sc.want, f.effects(t, id))
				})
			}
		})
	}
}

// finishCut finishes the saga id whose run was cut, as its caller would:
// recovery (c) drives it when it is in the log. A run cut before its first
// commit logged nothing when its first step is a TxAction (the record rides
// in that step's transaction): then nothing took effect, and Run again with
// the same id (h), what ErrNotStarted advises, runs it.
func finishCut(t *testing.T, f *fixture, c *Coordinator, h *Handle[regState], id string) Info {
	t.Helper()
	_, err := c.Get(context.Background(), id)
	if errors.Is(err, ErrNotFound) {
		assert.Equal(t, noneLeft, f.effects(t, id), "a saga not in the log took no effect")
		info, err := h.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
		if err != nil {
			require.ErrorIs(t, err, ErrCompensated)
		}
		return info
	}
	require.NoError(t, err)
	return recoverUntilFinal(t, c, id)
}
