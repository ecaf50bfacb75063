package redisrepo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/polystore/polystore/redisrepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newBoard[M redisrepo.Member](t *testing.T, client redis.UniversalClient, prefix string, opts redisrepo.LeaderboardOptions) *redisrepo.Leaderboard[M] {
	t.Helper()
	opts.Prefix = prefix + "lb:"
	b, err := redisrepo.NewLeaderboard[M](client, "xp", opts)
	require.NoError(t, err)
	return b
}

func members[M redisrepo.Member](es []redisrepo.Entry[M]) []M {
	out := make([]M, len(es))
	for i, e := range es {
		out[i] = e.Member
	}
	return out
}

func TestLeaderboard_Ranks_HighestFirstTiesByMemberDescending(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{})
		for m, s := range map[string]float64{"alice": 20, "bob": 20, "carol": 30, "dave": 5, "erin": 20} {
			require.NoError(t, b.Add(ctx, m, s))
		}

		top, err := b.Top(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, []redisrepo.Entry[string]{
			{Member: "carol", Score: 30, Rank: 0},
			{Member: "erin", Score: 20, Rank: 1},
			{Member: "bob", Score: 20, Rank: 2},
			{Member: "alice", Score: 20, Rank: 3},
			{Member: "dave", Score: 5, Rank: 4},
		}, top)
		for _, e := range top {
			r, err := b.Rank(ctx, e.Member)
			require.NoError(t, err)
			assert.Equal(t, e.Rank, r, "Rank of %s agrees with Top", e.Member)
			s, err := b.Score(ctx, e.Member)
			require.NoError(t, err)
			assert.Equal(t, e.Score, s)
		}
		top2, err := b.Top(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, top[:2], top2)
		n, err := b.Len(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(5), n)
	})
}

func TestLeaderboard_IntegerMembers_TiesByDecimalFormDescending(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		type userID int64
		b := newBoard[userID](t, client, prefix, redisrepo.LeaderboardOptions{})
		for _, id := range []userID{9, 10, 100, -1} {
			require.NoError(t, b.Add(ctx, id, 1))
		}
		top, err := b.Top(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, []userID{9, 100, 10, -1}, members(top), `"9" > "100" > "10" > "-1" byte by byte`)
	})
}

func TestLeaderboard_IncrScoreRemove(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{})
		s, err := b.Incr(ctx, "ada", 10)
		require.NoError(t, err)
		assert.Equal(t, 10.0, s, "a new member starts at 0")
		s, err = b.Incr(ctx, "ada", 2.5)
		require.NoError(t, err)
		assert.Equal(t, 12.5, s)

		_, err = b.Score(ctx, "nobody")
		assert.ErrorIs(t, err, redisrepo.ErrNotFound)
		_, err = b.Rank(ctx, "nobody")
		assert.ErrorIs(t, err, redisrepo.ErrNotFound)
		_, err = b.Around(ctx, "nobody", 2)
		assert.ErrorIs(t, err, redisrepo.ErrNotFound)

		require.NoError(t, b.Remove(ctx, "ada"))
		_, err = b.Score(ctx, "ada")
		assert.ErrorIs(t, err, redisrepo.ErrNotFound)
		assert.ErrorIs(t, b.Remove(ctx, "ada"), redisrepo.ErrNotFound, "a second Remove")
	})
}

func TestLeaderboard_Around_ReturnsNeighboursClippedAtTheTop(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{})
		for i := range 10 {
			require.NoError(t, b.Add(ctx, fmt.Sprintf("m%d", i), float64(i)))
		}
		got, err := b.Around(ctx, "m5", 2)
		require.NoError(t, err)
		assert.Equal(t, []redisrepo.Entry[string]{
			{Member: "m7", Score: 7, Rank: 2}, {Member: "m6", Score: 6, Rank: 3},
			{Member: "m5", Score: 5, Rank: 4},
			{Member: "m4", Score: 4, Rank: 5}, {Member: "m3", Score: 3, Rank: 6},
		}, got)

		got, err = b.Around(ctx, "m8", 3)
		require.NoError(t, err)
		assert.Equal(t, []string{"m9", "m8", "m7", "m6", "m5"}, members(got), "one above exists, three below")
		assert.Equal(t, int64(0), got[0].Rank)

		got, err = b.Around(ctx, "m0", 1)
		require.NoError(t, err)
		assert.Equal(t, []string{"m1", "m0"}, members(got), "nothing below the last")
	})
}

func TestLeaderboard_Page_WalksTheWholeBoardInOrder(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{})
		for i := range 50 {
			require.NoError(t, b.Add(ctx, fmt.Sprintf("user:%02d", i), float64(i%4))) // many ties; a colon as in real ids
		}
		want, err := b.Top(ctx, 100)
		require.NoError(t, err)

		var got []redisrepo.Entry[string]
		cursor, pages := "", 0
		for {
			p, err := b.Page(ctx, cursor, 7)
			require.NoError(t, err)
			got = append(got, p.Entries...)
			pages++
			require.Less(t, pages, 20, "paging ends")
			if p.Next == "" {
				break
			}
			cursor = p.Next
		}
		assert.Equal(t, want, got, "the pages are Top of the whole board, ranks included")
		assert.Equal(t, 8, pages, "7 full pages and a short one")
	})
}

func TestLeaderboard_Page_UnchangedMembersOnceWhileScoresChange(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{})
		rng := rand.New(rand.NewPCG(1, 2))
		const size = 300
		for i := range size {
			require.NoError(t, b.Add(ctx, fmt.Sprintf("m%03d", i), float64(rng.IntN(20)))) // ~15 ties per score
		}

		changed := map[string]bool{}
		seen := map[string]int{}
		cursor, pages := "", 0
		var lastOfPage string
		for {
			p, err := b.Page(ctx, cursor, 10)
			require.NoError(t, err)
			pages++
			require.Less(t, pages, 100, "paging ends")
			inPage := map[string]bool{}
			for i, e := range p.Entries {
				assert.False(t, inPage[e.Member], "%s twice in one page", e.Member)
				inPage[e.Member] = true
				seen[e.Member]++
				if i > 0 {
					prev := p.Entries[i-1]
					assert.True(t, prev.Score > e.Score || prev.Score == e.Score && prev.Member > e.Member,
						"board order: %v before %v", prev, e)
				}
			}
			if p.Next == "" {
				break
			}
			cursor = p.Next
			lastOfPage = p.Entries[len(p.Entries)-1].Member

			// Between pages: the cursor's own member moves (up, down, or
			// off the board), as do a few others, and a member joins.
			switch pages % 3 {
			case 0:
				_, err = b.Incr(ctx, lastOfPage, 7)
			case 1:
				_, err = b.Incr(ctx, lastOfPage, -3)
			default:
				err = b.Remove(ctx, lastOfPage)
			}
			require.NoError(t, err)
			changed[lastOfPage] = true
			for range 3 {
				m := fmt.Sprintf("m%03d", rng.IntN(size))
				_, err := b.Incr(ctx, m, float64(rng.IntN(11)-5))
				require.NoError(t, err)
				changed[m] = true
			}
			joined := fmt.Sprintf("new%03d", pages)
			require.NoError(t, b.Add(ctx, joined, float64(rng.IntN(20))))
			changed[joined] = true
		}

		require.Greater(t, len(changed), 20, "scores did change while paging")
		for i := range size {
			m := fmt.Sprintf("m%03d", i)
			if !changed[m] {
				assert.Equal(t, 1, seen[m], "unchanged member %s seen once", m)
			}
		}
	})
}

func TestLeaderboard_BadArguments_ReturnErrInvalid(t *testing.T) {
	client, prefix := servicetestRedis(t)
	ctx := context.Background()
	b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{})
	require.NoError(t, b.Add(ctx, "ada", 1))

	for name, err := range map[string]error{
		"nil client": func() error {
			_, err := redisrepo.NewLeaderboard[string](nil, "x", redisrepo.LeaderboardOptions{})
			return err
		}(),
		"empty name": func() error {
			_, err := redisrepo.NewLeaderboard[string](client, "", redisrepo.LeaderboardOptions{})
			return err
		}(),
		"window under a second": func() error {
			_, err := redisrepo.NewLeaderboard[string](client, "x", redisrepo.LeaderboardOptions{Window: time.Millisecond})
			return err
		}(),
		"retain without window": func() error {
			_, err := redisrepo.NewLeaderboard[string](client, "x", redisrepo.LeaderboardOptions{Retain: time.Hour})
			return err
		}(),
		"NaN score":    b.Add(ctx, "ada", nan()),
		"empty member": b.Add(ctx, "", 1),
		"Top 0":        func() error { _, err := b.Top(ctx, 0); return err }(),
		"Top too many": func() error { _, err := b.Top(ctx, redisrepo.MaxPage+1); return err }(),
		"Around -1":    func() error { _, err := b.Around(ctx, "ada", -1); return err }(),
		"Page 0":       func() error { _, err := b.Page(ctx, "", 0); return err }(),
		"cursor not base64": func() error {
			_, err := b.Page(ctx, "%%%", 5)
			return err
		}(),
		"cursor without member": func() error {
			_, err := b.Page(ctx, "MTI", 5) // "12"
			return err
		}(),
		"cursor with NaN": func() error {
			_, err := b.Page(ctx, "TmFOOmFkYQ", 5) // "NaN:ada"
			return err
		}(),
	} {
		assert.ErrorIs(t, err, redisrepo.ErrInvalid, name)
	}
	s, err := b.Score(ctx, "ada")
	require.NoError(t, err)
	assert.Equal(t, 1.0, s, "nothing changed")
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestLeaderboard_MemberNotOfTheType_ReturnsErrCodec(t *testing.T) {
	client, prefix := servicetestRedis(t)
	ctx := context.Background()
	b := newBoard[int](t, client, prefix, redisrepo.LeaderboardOptions{})
	require.NoError(t, client.ZAdd(ctx, b.Key(), redis.Z{Score: 1, Member: "not-a-number"}).Err())
	_, err := b.Top(ctx, 5)
	assert.ErrorIs(t, err, redisrepo.ErrCodec)
}

func TestLeaderboard_Window_OneKeyPerWindowThatExpires(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{Window: redisrepo.Weekly})
		monday := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
		now := time.Now()
		week := b.At(now)
		require.NoError(t, week.Add(ctx, "ada", 10))
		_, err := week.Incr(ctx, "bob", 5)
		require.NoError(t, err)

		assert.Equal(t, prefix+"lb:xp:20261130T000000Z", b.At(monday.Add(3*24*time.Hour)).Key(), "weeks start on Monday 00:00 UTC")
		assert.Equal(t, prefix+"lb:xp:20261123T000000Z", b.At(monday.Add(-time.Second)).Key())

		// The key of the current week expires one week (Retain's default)
		// after the week ends: in more than 7 days, at most 14.
		left := pttl(t, client, week.Key())
		assert.Greater(t, left, (7 * 24 * time.Hour).Milliseconds())
		assert.LessOrEqual(t, left, (14 * 24 * time.Hour).Milliseconds())

		lastWeek := b.At(now.AddDate(0, 0, -7))
		n, err := lastWeek.Len(ctx)
		require.NoError(t, err)
		assert.Zero(t, n, "last week's board is another key")
		require.NoError(t, lastWeek.Add(ctx, "old", 1))
		assert.Positive(t, pttl(t, client, lastWeek.Key()), "last week's key is still retained")

		longAgo := b.At(now.AddDate(0, 0, -21))
		require.NoError(t, longAgo.Add(ctx, "late", 1))
		n, err = longAgo.Len(ctx)
		require.NoError(t, err)
		assert.Zero(t, n, "a write to a window past its retention stores nothing")

		top, err := b.Top(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"ada", "bob"}, members(top), "b reads the window of time.Now()")
	})
}

func TestLeaderboard_Window_KeyGoneAfterWindowAndRetention(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{Window: time.Second, Retain: time.Millisecond})
		w := b.At(time.Now())
		require.NoError(t, w.Add(ctx, "ada", 1))
		require.Eventually(t, func() bool {
			n, err := w.Len(ctx)
			return err == nil && n == 0
		}, 5*time.Second, 20*time.Millisecond)
		assert.Equal(t, int64(-2), pttl(t, client, w.Key()), "the key is gone")
	})
}

func TestLeaderboard_Incr_ConcurrentIncrementsEndExact(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		b := newBoard[string](t, client, prefix, redisrepo.LeaderboardOptions{Window: redisrepo.Weekly}).At(time.Now())
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				_, err := b.Incr(ctx, fmt.Sprintf("u%d", i%4), 1.5)
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		top, err := b.Top(ctx, 10)
		require.NoError(t, err)
		require.Len(t, top, 4)
		for _, e := range top {
			assert.Equal(t, 75.0, e.Score, e.Member)
		}
	})
}
