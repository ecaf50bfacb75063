package redisrepo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/polystore/polystore/redisrepo"
	"github.com/redis/go-redis/v9"
)

// SessionData is what a service keeps in a session besides its subject.
type SessionData struct {
	Username string `json:"username"`
}

// Login creates a session once the password has been checked; the token
// goes to the client (a cookie, or a bearer token), and only its SHA-256
// is stored in Redis.
func ExampleSessionStore_Create() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	sessions, err := redisrepo.NewSessionStore[SessionData](rdb, redisrepo.SessionOptions{
		IdleTimeout: 30 * time.Minute, // signed out after 30 minutes without a request
		Lifetime:    7 * 24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	token, err := sessions.Create(context.Background(), "user-42", SessionData{Username: "ada"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(token)) // 52 URL-safe bytes
}

// Authentication middleware: one round trip reads the session and renews
// its idle timeout. A missing, expired, revoked or malformed token is
// ErrNotFound, so one check gives the 401.
func ExampleSessionStore_Get() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	sessions, err := redisrepo.NewSessionStore[SessionData](rdb, redisrepo.SessionOptions{})
	if err != nil {
		log.Fatal(err)
	}
	authenticate := func(w http.ResponseWriter, r *http.Request) (redisrepo.Session[SessionData], bool) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s, err := sessions.Get(r.Context(), token)
		switch {
		case errors.Is(err, redisrepo.ErrNotFound):
			http.Error(w, "sign in", http.StatusUnauthorized)
			return s, false
		case err != nil:
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return s, false
		}
		return s, true // s.Subject is who is calling
	}
	_ = authenticate
}

// On a password change or an account deletion, every session of the user
// ends.
func ExampleSessionStore_RevokeAll() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	sessions, err := redisrepo.NewSessionStore[SessionData](rdb, redisrepo.SessionOptions{})
	if err != nil {
		log.Fatal(err)
	}
	n, err := sessions.RevokeAll(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err) // some sessions may have ended: retry
	}
	fmt.Println(n, "sessions ended")
}

// A weekly XP board: each finished exercise adds points to this week's key,
// which expires a week after the week ends.
func ExampleLeaderboard_Incr() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	type UserID int64
	weekly, err := redisrepo.NewLeaderboard[UserID](rdb, "xp", redisrepo.LeaderboardOptions{Window: redisrepo.Weekly})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	xp, err := weekly.Incr(ctx, 42, 15)
	if err != nil {
		log.Fatal(err)
	}
	top, err := weekly.Top(ctx, 10)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(xp, top)
	lastWeek, err := weekly.At(time.Now().AddDate(0, 0, -7)).Top(ctx, 3)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(lastWeek)
}

// Pages by rank for an HTTP API: the cursor goes to the client as is
// (?cursor=...), and paging stays correct while scores change.
func ExampleLeaderboard_Page() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	board, err := redisrepo.NewLeaderboard[string](rdb, "all-time", redisrepo.LeaderboardOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	cursor := "" // the first page
	for {
		page, err := board.Page(ctx, cursor, 20)
		if err != nil {
			log.Fatal(err) // ErrInvalid for a cursor that Page did not return: a 400
		}
		for _, e := range page.Entries {
			fmt.Println(e.Rank+1, e.Member, e.Score)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
}

// A per-minute counter as a rate limit: the count starts again each minute,
// and a minute's key expires a minute after it ends.
func ExampleCounters_Incr() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	failedLogins, err := redisrepo.NewCounters(rdb, redisrepo.CounterOptions{
		Prefix: "failed-logins:",
		Window: redisrepo.Minutely,
	})
	if err != nil {
		log.Fatal(err)
	}
	n, err := failedLogins.Incr(context.Background(), "account:ada", 1)
	if err != nil {
		log.Fatal(err)
	}
	if n > 5 {
		fmt.Println("too many attempts, wait a minute")
	}
}

// A lock keeps two workers from doing the same job at once; the fencing
// token lets the database refuse the write of a worker whose lock expired
// while it was paused.
func ExampleLocker_Lock() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	locks, err := redisrepo.NewLocker(rdb, redisrepo.LockOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lk, err := locks.Lock(ctx, "report:2026-11", 30*time.Second)
	if errors.Is(err, redisrepo.ErrLocked) {
		fmt.Println("another worker is on it")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = lk.Release(context.Background()) }() // ErrNotHeld if it expired meanwhile

	// ... build the report, calling lk.Renew before 30s pass ...
	// The write carries the fence; the store refuses an older one:
	//   UPDATE reports SET body = $1, fence = $2 WHERE month = $3 AND fence < $2
	fmt.Println("writing with fence", lk.Fence)
}
