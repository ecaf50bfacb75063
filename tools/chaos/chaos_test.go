package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/polystore/polystore/tools/loadgen/mixed"
)

// TestChaosShort runs the short version of the harness (make test): a few
// faults under load, and requires that none broke a promise; then it
// breaks each promise on purpose (selfCheck) and requires that the checks
// report every one, so that a blind check cannot pass. Where PostgreSQL's
// programs or redis-server are missing it skips, unless
// POLYSTORE_REQUIRE_SERVICES is set, as make test sets it: then it fails.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the harness takes about a minute")
	}
	var missing []string
	if _, err := pgBinDir(); err != nil {
		missing = append(missing, "PostgreSQL's initdb and pg_ctl")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing = append(missing, "redis-server")
	}
	if len(missing) > 0 {
		if os.Getenv("POLYSTORE_REQUIRE_SERVICES") != "" {
			t.Fatalf("the chaos harness needs %s", strings.Join(missing, ", "))
		}
		t.Skipf("the chaos harness needs %s", strings.Join(missing, ", "))
	}
	cfg, err := parseFlags([]string{"-short"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.selfCheck = true
	if root := os.Getenv("CHAOS_ROOT"); root != "" {
		cfg.root = root
	}
	// Within go test's own 10 minutes, whose panic would skip the cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	sum, err := run(ctx, cfg, &out, &progress)
	t.Log("\n" + progress.String() + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.rows) != len(shortScenarios) {
		t.Errorf("ran %d scenarios, want %d (%v)", len(sum.rows), len(shortScenarios), shortScenarios)
	}
	for _, r := range sum.rows {
		if len(r.results) == 0 {
			t.Errorf("scenario %s sent no request", r.name)
		}
		for _, v := range r.violations {
			t.Errorf("scenario %s: %s", r.name, v)
		}
	}
	for _, m := range sum.missed {
		t.Errorf("a promise broken on purpose after the scenarios was not reported: %s", m)
	}
}

// TestCheckStatuses_Rules is the status rules as a table: which answers
// break a promise, in which scenario.
func TestCheckStatuses_Rules(t *testing.T) {
	faultAt := time.Unix(100, 0)
	healed := faultAt.Add(10 * time.Second)
	during := faultAt.Add(time.Second)
	redisDown := scenario{name: "redis-down", fault: fault{kind: "down", store: storeRedis}}
	redisRestart := scenario{name: "redis-restart", redisData: true, fault: fault{kind: "restart", store: storeRedis}}
	pgDown := scenario{name: "postgres-down", fault: fault{kind: "down", store: storePostgres}}
	baseline := scenario{name: "baseline", fault: fault{kind: "none", store: "-"}}
	tests := []struct {
		name     string
		s        scenario
		result   mixed.Result
		violates bool
	}{
		{"a 503 to a read while PostgreSQL is down", pgDown, mixed.Result{Op: mixed.OpRead, Status: 503}, false},
		{"a 429", pgDown, mixed.Result{Op: mixed.OpRead, Status: 429}, false},
		{"a 500", pgDown, mixed.Result{Op: mixed.OpRegister, Status: 500}, true},
		{"a 404", pgDown, mixed.Result{Op: mixed.OpRead, Status: 404}, true},
		{"no answer", pgDown, mixed.Result{Op: mixed.OpRead, Status: 0}, true},
		{"a 503 to a read while only Redis is down", redisDown, mixed.Result{Op: mixed.OpRead, Status: 503}, true},
		{"a 503 to a registration while only Redis is down", redisDown, mixed.Result{Op: mixed.OpRegister, Status: 503}, true},
		{"a 503 to a PATCH (a session) while only Redis is down", redisDown, mixed.Result{Op: mixed.OpPatch, Status: 503, NeedsSession: true}, false},
		{"a 401 to a session a Redis restart lost", redisRestart, mixed.Result{Op: mixed.OpPatch, Status: 401, NeedsSession: true, SessionLost: true}, false},
		{"a 401 to a session with Redis only down", redisDown, mixed.Result{Op: mixed.OpPatch, Status: 401, NeedsSession: true, SessionLost: true}, true},
		{"a 503 with every store up", baseline, mixed.Result{Op: mixed.OpPatch, Status: 503, NeedsSession: true}, true},
		{"a 200 with every store up", baseline, mixed.Result{Op: mixed.OpRead, Status: 200}, false},
		{"a 503 before the fault, left by the previous one", pgDown, mixed.Result{Op: mixed.OpRead, Status: 503, Start: faultAt.Add(-time.Second)}, false},
		{"a 500 before the fault", pgDown, mixed.Result{Op: mixed.OpRead, Status: 500, Start: faultAt.Add(-time.Second)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v violations
			r := tt.result
			if r.Start.IsZero() {
				r.Start = during
			}
			checkStatuses(tt.s, []mixed.Result{r}, faultAt, healed, &v)
			if got := len(v) > 0; got != tt.violates {
				t.Errorf("violates = %v (%v), want %v", got, v, tt.violates)
			}
		})
	}
}

// TestCheckGoroutines_AgainstTheScenarioAndTheFirstLevel: a leak shows
// against the scenario's own start, or, too slow for that, against the
// first scenario's.
func TestCheckGoroutines_AgainstTheScenarioAndTheFirstLevel(t *testing.T) {
	tests := []struct {
		name                 string
		first, before, after float64
		violations           int
	}{
		{"back to its level", 40, 40, 45, 0},
		{"below both", 40, 42, 38, 0},
		{"a leak within the scenario", 40, 40, 60, 2},
		{"a slow leak: within this scenario's slack, past the first level's", 40, 48, 55, 1},
		{"a level that fell since the first", 40, 20, 35, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v violations
			checkGoroutines(tt.first, tt.before, tt.after, &v)
			if len(v) != tt.violations {
				t.Errorf("violations = %v, want %d", v, tt.violations)
			}
		})
	}
}

// TestInFault_InFlightAtSomePointOfTheFault is the one definition of
// "during the fault" that the table and the log share.
func TestInFault_InFlightAtSomePointOfTheFault(t *testing.T) {
	faultAt := time.Unix(100, 0)
	healedAt := faultAt.Add(10 * time.Second)
	tests := []struct {
		name         string
		start        time.Time
		latency      time.Duration
		inFaultWants bool
	}{
		{"started and answered before the fault", faultAt.Add(-2 * time.Second), time.Second, false},
		{"started before, answered during", faultAt.Add(-time.Second), 2 * time.Second, true},
		{"started during", faultAt.Add(time.Second), time.Millisecond, true},
		{"started during, answered after the healing", healedAt.Add(-time.Second), 5 * time.Second, true},
		{"started after the healing", healedAt, time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inFault(mixed.Result{Start: tt.start, Latency: tt.latency}, faultAt, healedAt); got != tt.inFaultWants {
				t.Errorf("inFault = %v, want %v", got, tt.inFaultWants)
			}
		})
	}
}
