package redisrepo

import "time"

// Common window lengths for Leaderboard and Counters. Windows start at
// multiples of their length counted from Monday 1970-01-05 00:00 UTC, so a
// Daily window starts at midnight UTC, a Weekly one on Monday 00:00 UTC
// (ISO weeks), an Hourly one on the hour.
const (
	Minutely = time.Minute
	Hourly   = time.Hour
	Daily    = 24 * time.Hour
	Weekly   = 7 * Daily
)

// windowOrigin is a Monday, so that Weekly windows are ISO weeks.
var windowOrigin = time.Date(1970, 1, 5, 0, 0, 0, 0, time.UTC)

// window is the time-windowing shared by Leaderboard and Counters: one Redis
// key per window, expiring Retain after the window ends.
type window struct {
	period time.Duration // 0: no window
	retain time.Duration
	at     time.Time // fixed by At; zero: the window of time.Now()
}

func newWindow(period, retain time.Duration) (window, error) {
	switch {
	case period < 0:
		return window{}, invalid("Window is negative (%s)", period)
	case period > 0 && (period < time.Second || period%time.Second != 0):
		return window{}, invalid("Window %s is not a whole number of seconds", period)
	case retain < 0:
		return window{}, invalid("Retain is negative (%s)", retain)
	case period == 0 && retain != 0:
		return window{}, invalid("Retain %s is set without a Window", retain)
	}
	if retain == 0 {
		retain = period
	}
	return window{period: period, retain: retain}, nil
}

// bounds returns the start and end of the window that holds t.
func (w window) bounds(t time.Time) (start, end time.Time) {
	d := t.Sub(windowOrigin)
	n := d / w.period
	if d < 0 && d%w.period != 0 {
		n-- // floor, not truncation, before the origin
	}
	start = windowOrigin.Add(n * w.period)
	return start, start.Add(w.period)
}

// current returns the key suffix of the window in use and the Unix
// millisecond at which its key expires; ok is false without a window.
func (w window) current() (suffix string, expireAtMS int64, ok bool) {
	if w.period == 0 {
		return "", 0, false
	}
	t := w.at
	if t.IsZero() {
		t = time.Now()
	}
	start, end := w.bounds(t)
	return ":" + start.UTC().Format("20060102T150405Z"), end.Add(w.retain).UnixMilli(), true
}
