package redisrepo_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/redisrepo"
	"github.com/redis/go-redis/v9"
)

// Benchmarks run against the raw go-redis client doing the same work in the
// same run, on a single node; compare with
//
//	go test -run '^$' -bench . -benchmem -count 6 ./redisrepo/ > /tmp/redisrepo-bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl /tmp/redisrepo-bench.txt

// rawSessionGet is what a service writes by hand for a one-round-trip
// session read with a sliding expiry capped by an absolute deadline: the
// same Lua as the SessionStore's, over a hash holding subject, deadline and
// data.
var rawSessionGet = redis.NewScript(`local v = redis.call('HMGET', KEYS[1], 's', 'a', 'd')
if not v[1] then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local abs = tonumber(v[2])
if abs <= now then
  redis.call('DEL', KEYS[1])
  return false
end
local exp = now + tonumber(ARGV[1])
if exp > abs then exp = abs end
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', exp))
return v
`)

// BenchmarkSessionGet: SessionStore.Get against the hand-written read of a
// session stored under the SHA-256 of its token.
func BenchmarkSessionGet(b *testing.B) {
	ctx := context.Background()
	client, prefix := servicetest.Redis(b)
	s, err := redisrepo.NewSessionStore[profile](client, redisrepo.SessionOptions{Prefix: prefix + "sess:"})
	if err != nil {
		b.Fatal(err)
	}
	token, err := s.Create(ctx, "user-42", profile{Name: "Ada Lovelace"})
	if err != nil {
		b.Fatal(err)
	}
	rawToken := "raw-" + token
	sum := sha256.Sum256([]byte(rawToken))
	data, _ := json.Marshal(profile{Name: "Ada Lovelace"})
	rawKey := prefix + "raw:" + hex.EncodeToString(sum[:])
	if err := client.HSet(ctx, rawKey, "s", "user-42", "a", "99999999999999", "d", data).Err(); err != nil {
		b.Fatal(err)
	}

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, err := s.Get(ctx, token)
			if err != nil || got.Data.Name != "Ada Lovelace" {
				b.Fatal(got, err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sum := sha256.Sum256([]byte(rawToken))
			v, err := rawSessionGet.Run(ctx, client, []string{prefix + "raw:" + hex.EncodeToString(sum[:])}, "1800000").Slice()
			if err != nil {
				b.Fatal(err)
			}
			var p profile
			d, _ := v[2].(string)
			if err := json.Unmarshal([]byte(d), &p); err != nil || p.Name != "Ada Lovelace" {
				b.Fatal(p, err)
			}
		}
	})
}

// BenchmarkLeaderboardTop10: Leaderboard.Top(10) against ZREVRANGE 0 9
// WITHSCORES into a slice of members and scores, on a board of 1,000.
func BenchmarkLeaderboardTop10(b *testing.B) {
	ctx := context.Background()
	client, prefix := servicetest.Redis(b)
	board, err := redisrepo.NewLeaderboard[string](client, "xp", redisrepo.LeaderboardOptions{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	zs := make([]redis.Z, 1000)
	for i := range zs {
		zs[i] = redis.Z{Score: float64(i % 97), Member: fmt.Sprintf("user-%04d", i)}
	}
	if err := client.ZAdd(ctx, board.Key(), zs...).Err(); err != nil {
		b.Fatal(err)
	}
	type entry struct {
		Member string
		Score  float64
		Rank   int64
	}

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			top, err := board.Top(ctx, 10)
			if err != nil || len(top) != 10 {
				b.Fatal(top, err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := client.ZRevRangeWithScores(ctx, prefix+"xp", 0, 9).Result()
			if err != nil {
				b.Fatal(err)
			}
			top := make([]entry, len(res))
			for i, z := range res {
				top[i] = entry{Member: z.Member.(string), Score: z.Score, Rank: int64(i)}
			}
			if len(top) != 10 {
				b.Fatal(top)
			}
		}
	})
}

// BenchmarkCounterIncr: Counters.Incr against INCRBY.
func BenchmarkCounterIncr(b *testing.B) {
	ctx := context.Background()
	client, prefix := servicetest.Redis(b)
	c, err := redisrepo.NewCounters(client, redisrepo.CounterOptions{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	name := "hits"

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Incr(ctx, name, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := client.IncrBy(ctx, prefix+"raw:"+name, 1).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
