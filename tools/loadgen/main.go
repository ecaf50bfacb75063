// Command loadgen measures the example server (examples/server) from the
// same machine: it sends requests for a bounded time or count to a server
// on a loopback address only, and prints requests per second and latency
// percentiles.
//
// Scenarios:
//
//	get-user    GET /users/{id} over -users users it registers first (and
//	            reads once each, to warm the cache, unless -warm=false)
//	post-users  POST /users with a new username each time
//	mixed       registrations (each followed by a login), profile reads,
//	            PATCHes, conversations and deletions, each user's requests
//	            in sequence (package mixed, also the load of tools/chaos)
//
// Start the server without its rate limit (RATE_LIMIT=-1), or loadgen
// measures 429s; start it with CACHE_DISABLED=true to measure reads that go
// to PostgreSQL every time.
//
//	loadgen -scenario get-user -duration 10s -concurrency 8
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polystore/polystore/tools/loadgen/mixed"
)

// Bounds on a run, so that a typo cannot start an endless flood.
const (
	maxDuration = 5 * time.Minute
	maxRequests = 1_000_000
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
	base        *url.URL
	scenario    string
	duration    time.Duration
	requests    int
	concurrency int
	users       int
	warm        bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	rawURL := fs.String("url", "http://127.0.0.1:8080", "server base URL (loopback addresses only)")
	fs.StringVar(&c.scenario, "scenario", "get-user", "get-user, post-users or mixed")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send requests (at most 5m)")
	fs.IntVar(&c.requests, "requests", 0, "stop after this many requests; 0: only -duration bounds the run (at most 1000000)")
	fs.IntVar(&c.concurrency, "concurrency", 8, "requests in flight at once")
	fs.IntVar(&c.users, "users", 100, "users registered for get-user")
	fs.BoolVar(&c.warm, "warm", true, "read every user once before measuring get-user (fills the cache)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.scenario != "get-user" && c.scenario != "post-users" && c.scenario != "mixed":
		return c, fmt.Errorf("-scenario %q: want get-user, post-users or mixed", c.scenario)
	case c.duration <= 0 || c.duration > maxDuration:
		return c, fmt.Errorf("-duration %s: want more than 0 and at most %s", c.duration, maxDuration)
	case c.requests < 0 || c.requests > maxRequests:
		return c, fmt.Errorf("-requests %d: want 0 to %d", c.requests, maxRequests)
	case c.concurrency < 1 || c.concurrency > 1000:
		return c, fmt.Errorf("-concurrency %d: want 1 to 1000", c.concurrency)
	case c.users < 1 || c.users > 10_000:
		return c, fmt.Errorf("-users %d: want 1 to 10000", c.users)
	}
	u, err := url.Parse(*rawURL)
	if err != nil {
		return c, fmt.Errorf("-url: %w", err)
	}
	if err := checkLoopback(u); err != nil {
		return c, err
	}
	c.base = u
	return c, nil
}

// checkLoopback refuses any target but this machine's loopback: a load
// generator must never be pointed at someone else's server.
func checkLoopback(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("-url %q: want an http:// URL", u)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: only loopback addresses (127.0.0.0/8, ::1, localhost) may be targeted", u)
	}
	return nil
}

// result is one request's outcome.
type result struct {
	status  int // 0: transport error
	latency time.Duration
}

func run(args []string, out io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.concurrency, MaxConnsPerHost: cfg.concurrency},
	}
	runID := randomHex(4)

	var next func(i int) (*http.Request, error)
	switch cfg.scenario {
	case "get-user":
		ids, err := registerUsers(client, cfg, runID)
		if err != nil {
			return err
		}
		next = func(i int) (*http.Request, error) {
			return http.NewRequest("GET", cfg.base.JoinPath("users", ids[i%len(ids)]).String(), nil)
		}
		if cfg.warm {
			for i := range ids {
				req, err := next(i)
				if err == nil {
					_, err = send(client, req)
				}
				if err != nil {
					return fmt.Errorf("warming the cache: %w", err)
				}
			}
		}
	case "post-users":
		next = func(i int) (*http.Request, error) {
			return newUserRequest(cfg.base, fmt.Sprintf("load_%s_%d", runID, i))
		}
	case "mixed":
		return runMixed(client, cfg, "mix"+runID, out)
	}

	results, elapsed := measure(client, cfg, next)
	report(out, cfg, results, elapsed)
	return nil
}

// measure runs cfg.concurrency workers until the duration or the request
// count is reached and returns every result and the time they took.
func measure(client *http.Client, cfg config, next func(int) (*http.Request, error)) ([]result, time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	var counter atomic.Int64
	perWorker := make([][]result, cfg.concurrency)
	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(counter.Add(1)) - 1
				if cfg.requests > 0 && i >= cfg.requests {
					return
				}
				req, err := next(i)
				if err != nil {
					perWorker[w] = append(perWorker[w], result{})
					continue
				}
				start := time.Now()
				status, _ := send(client, req)
				perWorker[w] = append(perWorker[w], result{status: status, latency: time.Since(start)})
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []result
	for _, r := range perWorker {
		all = append(all, r...)
	}
	return all, elapsed
}

// report prints the throughput, the status counts and the latency
// percentiles of the successful requests.
func report(out io.Writer, cfg config, results []result, elapsed time.Duration) {
	statuses := map[int]int{}
	var ok []time.Duration
	for _, r := range results {
		statuses[r.status]++
		if r.status >= 200 && r.status < 300 {
			ok = append(ok, r.latency)
		}
	}
	slices.Sort(ok)
	fmt.Fprintf(out, "scenario %s against %s: %d requests in %.2fs, concurrency %d\n",
		cfg.scenario, cfg.base, len(results), elapsed.Seconds(), cfg.concurrency)
	fmt.Fprintf(out, "throughput: %.0f req/s (%.0f successful req/s)\n",
		float64(len(results))/elapsed.Seconds(), float64(len(ok))/elapsed.Seconds())
	codes := make([]int, 0, len(statuses))
	for s := range statuses {
		codes = append(codes, s)
	}
	slices.Sort(codes)
	for _, s := range codes {
		name := fmt.Sprint(s)
		if s == 0 {
			name = "transport error"
		}
		fmt.Fprintf(out, "status %s: %d\n", name, statuses[s])
	}
	if statuses[http.StatusTooManyRequests] > 0 {
		fmt.Fprintln(out, "warning: 429s: start the server with RATE_LIMIT=-1 to measure it, not its rate limit")
	}
	if len(ok) > 0 {
		fmt.Fprintf(out, "latency of successful requests: p50 %s  p90 %s  p99 %s  max %s\n",
			round(percentile(ok, 50)), round(percentile(ok, 90)), round(percentile(ok, 99)), round(ok[len(ok)-1]))
	}
}

// runMixed sends the mixed load and reports it as the other scenarios
// are, then each kind of request's answers.
func runMixed(client *http.Client, cfg config, prefix string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	rec := &mixed.Record{}
	start := time.Now()
	err := mixed.Run(ctx, mixed.Config{Base: cfg.base, Client: client, Workers: cfg.concurrency,
		MaxRequests: cfg.requests, Prefix: prefix}, rec)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	all := rec.Snapshot()
	results := make([]result, len(all))
	byOp := map[mixed.Op]map[int]int{}
	for i, r := range all {
		results[i] = result{status: r.Status, latency: r.Latency}
		if byOp[r.Op] == nil {
			byOp[r.Op] = map[int]int{}
		}
		byOp[r.Op][r.Status]++
	}
	report(out, cfg, results, elapsed)
	for _, op := range mixed.Ops {
		codes := make([]int, 0, len(byOp[op]))
		for c := range byOp[op] {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		fmt.Fprintf(out, "%s:", op)
		for _, c := range codes {
			fmt.Fprintf(out, " %d×%d", byOp[op][c], c)
		}
		fmt.Fprintln(out)
	}
	return nil
}

// percentile returns the p-th percentile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}

// registerUsers creates cfg.users users and returns their ids.
func registerUsers(client *http.Client, cfg config, runID string) ([]string, error) {
	ids := make([]string, 0, cfg.users)
	for i := range cfg.users {
		req, err := newUserRequest(cfg.base, fmt.Sprintf("read_%s_%d", runID, i))
		if err != nil {
			return nil, err
		}
		res, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("registering users: %w", err)
		}
		var body struct {
			User struct {
				ID string `json:"id"`
			} `json:"user"`
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated || err != nil {
			return nil, fmt.Errorf("registering users: POST /users answered %s", res.Status)
		}
		ids = append(ids, body.User.ID)
	}
	return ids, nil
}

func newUserRequest(base *url.URL, username string) (*http.Request, error) {
	body, err := json.Marshal(map[string]string{
		"username": username, "email": username + "@example.org",
		"password": "correct horse battery", "language": "fr",
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("POST", base.JoinPath("users").String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// send does req, reads the whole body (so the connection is reused) and
// returns the status; 0 with the error when the request failed.
func send(client *http.Client, req *http.Request) (int, error) {
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return 0, err
	}
	if res.StatusCode >= 300 {
		return res.StatusCode, errors.New(res.Status)
	}
	return res.StatusCode, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
