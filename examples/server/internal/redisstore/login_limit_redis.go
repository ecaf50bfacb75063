package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/redisrepo"
)

// LoginLimiter counts failed logins per account and per client in fixed
// windows (redisrepo.Counters with a Window: one INCRBY per failure, one
// MGET per check). Counters rather than the request limiter's GCRA
// (redis_rate): only failures count, so the check (before the password is
// compared) and the count (after it failed) are two separate calls, which
// Counters' Get and Incr are; redis_rate takes a token on every call.
type LoginLimiter struct {
	counters   *redisrepo.Counters
	window     time.Duration
	perAccount int64
	perClient  int64
	timeout    time.Duration
}

var _ chat.LoginLimiter = (*LoginLimiter)(nil)

// windowOrigin is where redisrepo aligns windows (a Monday, 00:00 UTC).
var windowOrigin = time.Date(1970, 1, 5, 0, 0, 0, 0, time.UTC)

// NewLoginLimiter returns a limiter that allows perAccount failed logins
// per account and perClient per client in each window; keys are prefix +
// "loginfail:" + "account:" + SHA-256(login) (no address in clear in
// Redis) or "client:" + the client's address, each + the window's start.
func NewLoginLimiter(client redis.UniversalClient, prefix string, window time.Duration, perAccount, perClient int) (*LoginLimiter, error) {
	c, err := redisrepo.NewCounters(client, redisrepo.CounterOptions{Prefix: prefix + "loginfail:", Window: window})
	if err != nil {
		return nil, err
	}
	return &LoginLimiter{counters: c, window: window, perAccount: int64(perAccount), perClient: int64(perClient), timeout: time.Second}, nil
}

func accountKey(account string) string {
	sum := sha256.Sum256([]byte(account))
	return "account:" + hex.EncodeToString(sum[:])
}

// Check returns the time until the current window ends when the account or
// the client has reached its limit in it, and 0 otherwise.
func (l *LoginLimiter) Check(ctx context.Context, account, client string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	n, err := l.counters.GetMany(ctx, accountKey(account), "client:"+client)
	if err != nil {
		return 0, chat.Wrap(chat.CodeUnavailable, err, "the login limit (Redis) is unavailable")
	}
	if n[0] < l.perAccount && (l.perClient <= 0 || n[1] < l.perClient) {
		return 0, nil
	}
	wait := l.window - time.Since(windowOrigin)%l.window
	return wait, nil
}

// Failed counts one failed login for the account and the client.
func (l *LoginLimiter) Failed(ctx context.Context, account, client string) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	for _, name := range []string{accountKey(account), "client:" + client} {
		if _, err := l.counters.Incr(ctx, name, 1); err != nil {
			return chat.Wrap(chat.CodeUnavailable, err, "the login limit (Redis) is unavailable")
		}
	}
	return nil
}
