package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://127.8.9.10", true},
		{"http://localhost:8080", true},
		{"http://[::1]:8080", true},
		{"http://10.0.0.1:8080", false},
		{"http://192.168.1.2", false},
		{"http://example.org", false},
		{"http://8.8.8.8", false},
		{"ftp://127.0.0.1", false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkLoopback(u); (err == nil) != tt.ok {
			t.Errorf("checkLoopback(%s) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

func TestParseFlags_BoundsTheRun(t *testing.T) {
	for _, args := range [][]string{
		{"-duration", "1h"},
		{"-duration", "0s"},
		{"-requests", "2000000"},
		{"-concurrency", "0"},
		{"-scenario", "delete-everything"},
		{"-url", "http://10.1.2.3:8080"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	if _, err := parseFlags(nil); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestPercentile_NearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {90, 90 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v", got)
	}
}

func TestMeasure_ElapsedCoversTheWholeRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cfg := config{duration: 100 * time.Millisecond, concurrency: 2}
	results, elapsed := measure(srv.Client(), cfg, func(int) (*http.Request, error) {
		return http.NewRequest("GET", srv.URL, nil)
	})
	if len(results) == 0 {
		t.Fatal("no requests sent")
	}
	for _, r := range results {
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
	}
	if elapsed < cfg.duration {
		t.Errorf("elapsed %s is shorter than the run's %s", elapsed, cfg.duration)
	}
}
