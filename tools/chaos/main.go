// Command chaos is the fault-injection harness of the example server
// (examples/server): it runs the server under the mixed load of
// tools/loadgen while it injects faults between the server and each store,
// heals them, waits for the saga recovery, then checks the server's
// promises against the stores themselves, and prints a table, one row per
// scenario. It exits with status 1 when any promise was broken.
//
// It touches no shared service: it starts its own PostgreSQL (initdb and
// pg_ctl from /usr/lib/postgresql/15/bin, as the postgres user when run as
// root), Redis (redis-server, no persistence) and FerretDB (built from
// tools/ferretdb, on that PostgreSQL) on free loopback ports in a temporary
// directory, builds the example server from the checkout, and puts an
// in-process Toxiproxy (github.com/Shopify/toxiproxy/v2) on 127.0.0.1
// between the server and each store. Every process it started is stopped
// by its pid at the end, on failure and on SIGINT or SIGTERM too.
//
// Faults: a store down (its proxy disabled: connection refused),
// blackholed (Toxiproxy's timeout toxic with 0: no answer), slow (latency
// 150ms ± 50ms), reset (reset_peer: every answer cut by a RST); and at
// process level PostgreSQL restarted (pg_ctl restart -m fast) and crashed
// (pg_ctl restart -m immediate: the non-durable commits still in its WAL
// buffers are lost), FerretDB killed with SIGKILL and restarted, Redis
// restarted.
//
// The invariants, after each scenario has healed and recovery has run:
//
//   - every registration answered 201 has its user row and its welcome
//     conversation, and no user row is without a conversation nor any
//     conversation without a user;
//   - every acknowledged PATCH is what GET returns, and what the row holds;
//   - every acknowledged DELETE (204, or 202 whose operation succeeded)
//     left nothing in PostgreSQL, MongoDB or Redis;
//   - no saga left running or compensating (failed ones are listed);
//   - statuses: no error but 503 and 429 at any time (and 401 to a session
//     that a Redis restart lost), and no 5xx at all for the requests that
//     need no session while only Redis is faulty;
//   - the server's goroutines and heap back to their level before the fault.
//
// Usage, from tools/:
//
//	go run ./chaos              # every scenario (make chaos)
//	go run ./chaos -short       # the short version (make test runs it as TestChaosShort)
//	go run ./chaos -run 'redis' # the scenarios whose name matches
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	sum, err := run(ctx, cfg, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if sum.violations > 0 {
		fmt.Fprintf(os.Stderr, "chaos: %d invariant violations\n", sum.violations)
		os.Exit(1)
	}
}

// config is a run's settings.
type config struct {
	root    string         // the checkout the server is built from
	only    *regexp.Regexp // scenarios to run
	short   bool
	before  time.Duration // load before the fault
	during  time.Duration // the fault
	after   time.Duration // load after the healing
	workers int
	reads   time.Duration // each read measurement (item 5), 0: none
	keep    bool          // keep the temporary directory (logs)
	// selfCheck breaks every promise on purpose after the scenarios and
	// reports in summary.missed the breaches the checks did not see.
	selfCheck bool
}

// Bounds, so that a typo cannot start an endless run.
const (
	maxPhase   = 2 * time.Minute
	maxWorkers = 64
)

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.StringVar(&c.root, "root", "", "the polystore checkout to build the server from (default: the one above the working directory)")
	only := fs.String("run", "", "run only the scenarios whose name matches this regular expression")
	fs.BoolVar(&c.short, "short", false, "the short version: "+fmt.Sprint(shortScenarios)+", shorter phases")
	fs.DurationVar(&c.before, "before", 0, "load before each fault (default 3s, short 2s)")
	fs.DurationVar(&c.during, "during", 0, "how long each fault lasts (default 8s, short 5s)")
	fs.DurationVar(&c.after, "after", 0, "load after each healing (default 5s, short 3s)")
	fs.IntVar(&c.workers, "workers", 4, "requests in flight at once")
	fs.DurationVar(&c.reads, "reads", -1, "length of each GET /users/{id} measurement with the cache disabled, Redis down and blackholed (default 5s; short: 0, none)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory with the stores' and the server's logs")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	def := func(d *time.Duration, full, short time.Duration) {
		if *d == 0 {
			*d = full
			if c.short {
				*d = short
			}
		}
	}
	def(&c.before, 3*time.Second, 2*time.Second)
	def(&c.during, 8*time.Second, 5*time.Second)
	def(&c.after, 5*time.Second, 3*time.Second)
	if c.reads < 0 {
		c.reads = 5 * time.Second
		if c.short {
			c.reads = 0
		}
	}
	for _, d := range []time.Duration{c.before, c.during, c.after, c.reads} {
		if d < 0 || d > maxPhase {
			return c, fmt.Errorf("a phase of %s: want 0 to %s", d, maxPhase)
		}
	}
	if c.workers < 1 || c.workers > maxWorkers {
		return c, fmt.Errorf("-workers %d: want 1 to %d", c.workers, maxWorkers)
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return c, fmt.Errorf("-run: %w", err)
		}
		c.only = re
	}
	return c, nil
}

// summary is what a run found.
type summary struct {
	rows       []row
	reads      []readRow
	violations int
	missed     []string // selfCheck's breaches that no check reported
}

// run sets up the stores, the proxies and the servers, runs the scenarios
// cfg selects, prints the table to out (progress to logw), and stops
// everything it started.
func run(ctx context.Context, cfg config, out, logw io.Writer) (summary, error) {
	h, err := setup(ctx, cfg, logw)
	if err != nil {
		return summary{}, err
	}
	defer h.teardown()
	return h.runAll(ctx, out)
}
