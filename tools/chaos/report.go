package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/polystore/polystore/tools/loadgen/mixed"
)

// printTable prints the scenarios' table and the read measurement's, in
// Markdown, so that the README takes them as they are.
func printTable(out io.Writer, cfg config, sum summary) {
	fmt.Fprintf(out, "\n%d workers; each scenario: %s of load, the fault for %s, healed, %s of load, then recovery and the checks\n\n",
		cfg.workers, cfg.before, cfg.during, cfg.after)
	fmt.Fprintln(out, "| scenario | requests | answers by status | 503s before, during, after the fault | p50 / p99 during | p50 / p99 after | recovery | checked: users, PATCHed, deleted, 202s | goroutines | heap goal MiB | failed sagas | violations |")
	fmt.Fprintln(out, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range sum.rows {
		// During: inFault; after: those started after the healing. The
		// 503s go by when the request started.
		var during, after []time.Duration
		var unavailable [3]int
		for _, res := range r.results {
			if inFault(res, r.faultAt, r.healedAt) {
				during = append(during, res.Latency) // unanswered ones too: their wait counts
			}
			if !res.Start.Before(r.healedAt) {
				after = append(after, res.Latency)
			}
			if res.Status == http.StatusServiceUnavailable {
				switch {
				case res.Start.Before(r.faultAt):
					unavailable[0]++
				case res.Start.Before(r.healedAt):
					unavailable[1]++
				default:
					unavailable[2]++
				}
			}
		}
		c := r.checked
		fmt.Fprintf(out, "| %s | %d | %s | %d, %d, %d | %s | %s | %s | %d, %d, %d, %d | %.0f → %.0f | %.1f → %.1f | %d | %d |\n",
			r.name, len(r.results), statusCounts(r.results), unavailable[0], unavailable[1], unavailable[2], percentiles(during), percentiles(after),
			r.recoveryTook.Round(100*time.Millisecond), c.users, c.patched, c.deletes, c.operations, r.goroutines[0], r.goroutines[1], r.heap[0]/(1<<20), r.heap[1]/(1<<20), len(r.failed), len(r.violations))
	}
	fmt.Fprintf(out, "\ninvariant violations: %d\n", sum.violations)
	if len(sum.reads) == 0 {
		return
	}
	fmt.Fprintf(out, "\nGET /users/{id}, %d workers, %s per condition, twice, alternating\n\n", cfg.workers, cfg.reads)
	fmt.Fprintln(out, "| condition | reads | answers by status | p50 | p99 | p99 / p99 with the cache disabled |")
	fmt.Fprintln(out, "| --- | ---: | --- | ---: | ---: | ---: |")
	var ref time.Duration
	for i, r := range sum.reads {
		slices.Sort(r.latencies)
		p99 := percentile(r.latencies, 99)
		if i == 0 {
			ref = p99
		}
		ratio := "1"
		if i > 0 && ref > 0 {
			ratio = fmt.Sprintf("%.2f", float64(p99)/float64(ref))
		}
		n := 0
		var parts []string
		codes := make([]int, 0, len(r.statuses))
		for c := range r.statuses {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			n += r.statuses[c]
			parts = append(parts, fmt.Sprintf("%s: %d", statusName(c), r.statuses[c]))
		}
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s |\n", r.name, n, strings.Join(parts, ", "),
			round(percentile(r.latencies, 50)), round(p99), ratio)
	}
}

// inFault reports whether res was in flight at some point of the fault,
// the ones it caught on their way included (a blackhole can hold all of
// them from before it began to its end): the table's "during" and the
// log's per-operation figures.
func inFault(res mixed.Result, faultAt, healedAt time.Time) bool {
	return res.Start.Before(healedAt) && res.Start.Add(res.Latency).After(faultAt)
}

// statusCounts is "200: 340, 201: 12, 503: 20".
func statusCounts(results []mixed.Result) string {
	counts := map[int]int{}
	for _, r := range results {
		counts[r.Status]++
	}
	codes := make([]int, 0, len(counts))
	for c := range counts {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%s: %d", statusName(c), counts[c])
	}
	return strings.Join(parts, ", ")
}

func statusName(c int) string {
	if c == 0 {
		return "no answer"
	}
	return fmt.Sprint(c)
}

// percentiles is "p50 / p99" of latencies, "-" when there are none.
func percentiles(latencies []time.Duration) string {
	if len(latencies) == 0 {
		return "-"
	}
	slices.Sort(latencies)
	return round(percentile(latencies, 50)) + " / " + round(percentile(latencies, 99))
}

// percentile returns the p-th percentile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Microsecond).String()
}
