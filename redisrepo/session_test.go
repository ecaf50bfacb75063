package redisrepo_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/polystore/polystore/redisrepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type profile struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin"`
}

func newSessions(t *testing.T, client redis.UniversalClient, prefix string, opts redisrepo.SessionOptions) *redisrepo.SessionStore[profile] {
	t.Helper()
	opts.Prefix = prefix + "sess:"
	s, err := redisrepo.NewSessionStore[profile](client, opts)
	require.NoError(t, err)
	return s
}

// sessionKey is the documented key layout: Prefix+"{"+tag+"}:s:"+SHA-256(token),
// the tag being the token's first 8 bytes.
func sessionKey(prefix, token string) string {
	sum := sha256.Sum256([]byte(token))
	return prefix + "sess:{" + token[:8] + "}:s:" + hex.EncodeToString(sum[:])
}

func TestSessionStore_CreateThenGet_ReturnsSubjectDataAndDeadline(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{Lifetime: time.Hour})
		before := time.Now()
		token, err := s.Create(ctx, "user-1", profile{Name: "Ada"})
		require.NoError(t, err)
		assert.Len(t, token, 52)
		for _, c := range token {
			assert.True(t, strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", c), "URL-safe: %q", c)
		}

		got, err := s.Get(ctx, token)
		require.NoError(t, err)
		assert.Equal(t, "user-1", got.Subject)
		assert.Equal(t, profile{Name: "Ada"}, got.Data)
		assert.WithinDuration(t, before.Add(time.Hour), got.ExpiresAt, 5*time.Second, "the absolute deadline")

		other, err := s.Create(ctx, "user-1", profile{Name: "Ada"})
		require.NoError(t, err)
		assert.NotEqual(t, token, other, "each session has its own token")
	})
}

func TestSessionStore_Get_RenewsTheIdleTimeout(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		const idle = 2000 // ms: Get and the PTTL after it have idle/2 to run, even on a loaded machine
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{IdleTimeout: idle * time.Millisecond, Lifetime: time.Hour})
		token, err := s.Create(ctx, "u", profile{Name: "Ada"})
		require.NoError(t, err)
		key := sessionKey(prefix, token)
		require.Positive(t, pttl(t, client, key))
		assert.LessOrEqual(t, pttl(t, client, key), int64(idle), "a new session lives IdleTimeout")

		require.Eventually(t, func() bool { return pttl(t, client, key) < idle/2 }, 5*time.Second, 10*time.Millisecond)
		_, err = s.Get(ctx, token)
		require.NoError(t, err)
		assert.Greater(t, pttl(t, client, key), int64(idle/2), "Get pushed the expiry to now+IdleTimeout")

		// Unread for IdleTimeout, the session ends (EXISTS does not renew it).
		require.Eventually(t, func() bool { return client.Exists(ctx, key).Val() == 0 }, 5*time.Second, 10*time.Millisecond)
		_, err = s.Get(ctx, token)
		assert.ErrorIs(t, err, redisrepo.ErrNotFound)
		assert.NotErrorIs(t, err, redisrepo.ErrInvalid)
	})
}

func TestSessionStore_Get_NeverExtendsPastTheLifetime(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		const life = 1000 // ms
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{IdleTimeout: time.Hour, Lifetime: life * time.Millisecond})
		token, err := s.Create(ctx, "u", profile{})
		require.NoError(t, err)
		key := sessionKey(prefix, token)

		// Reading all the time renews the idle timeout, never the lifetime:
		// the Gets themselves run into ErrNotFound.
		var reads int
		require.Eventually(t, func() bool {
			_, err := s.Get(ctx, token)
			if err == nil {
				reads++
				assert.LessOrEqual(t, pttl(t, client, key), int64(life), "expiry within the lifetime")
				return false
			}
			assert.ErrorIs(t, err, redisrepo.ErrNotFound)
			return true
		}, 5*time.Second, 20*time.Millisecond)
		assert.Positive(t, reads, "the session was readable before its lifetime ended")
	})
}

func TestSessionStore_Update_ReplacesDataOfALiveSessionOnly(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		token, err := s.Create(ctx, "u", profile{Name: "Ada"})
		require.NoError(t, err)
		require.NoError(t, s.Update(ctx, token, profile{Name: "Ada", Admin: true}))
		got, err := s.Get(ctx, token)
		require.NoError(t, err)
		assert.Equal(t, profile{Name: "Ada", Admin: true}, got.Data)
		assert.Equal(t, "u", got.Subject, "Update keeps the subject")

		// Update is not a read: it leaves the expiry where it was.
		key := sessionKey(prefix, token)
		require.NoError(t, client.PExpire(ctx, key, 500*time.Second).Err())
		require.NoError(t, s.Update(ctx, token, profile{Name: "Ada"}))
		assert.LessOrEqual(t, pttl(t, client, key), (500 * time.Second).Milliseconds(), "Update did not renew the session")

		require.NoError(t, s.Delete(ctx, token))
		assert.ErrorIs(t, s.Update(ctx, token, profile{}), redisrepo.ErrNotFound)
		assert.Empty(t, dump(t, client, prefix), "Update of a deleted session wrote nothing")
	})
}

func TestSessionStore_Delete_EndsOneSessionAndLeavesNoIndexEntry(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		token, err := s.Create(ctx, "u", profile{})
		require.NoError(t, err)
		kept, err := s.Create(ctx, "u", profile{})
		require.NoError(t, err)

		require.NoError(t, s.Delete(ctx, token))
		_, err = s.Get(ctx, token)
		assert.ErrorIs(t, err, redisrepo.ErrNotFound)
		assert.ErrorIs(t, s.Delete(ctx, token), redisrepo.ErrNotFound, "a second Delete")
		_, err = s.Get(ctx, kept)
		assert.NoError(t, err, "the subject's other session")

		require.NoError(t, s.Delete(ctx, kept))
		assert.Empty(t, dump(t, client, prefix), "no session and no index left")
	})
}

func TestSessionStore_RevokeAll_EndsEverySessionOfOneSubjectOnly(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		var mine []string
		for range 3 {
			token, err := s.Create(ctx, "alice", profile{Name: "Alice"})
			require.NoError(t, err)
			mine = append(mine, token)
		}
		loggedOut, err := s.Create(ctx, "alice", profile{})
		require.NoError(t, err)
		require.NoError(t, s.Delete(ctx, loggedOut))
		theirs, err := s.Create(ctx, "bob", profile{Name: "Bob"})
		require.NoError(t, err)

		n, err := s.RevokeAll(ctx, "alice")
		require.NoError(t, err)
		assert.Equal(t, 3, n, "the live sessions")
		for _, token := range mine {
			_, err := s.Get(ctx, token)
			assert.ErrorIs(t, err, redisrepo.ErrNotFound)
		}
		got, err := s.Get(ctx, theirs)
		require.NoError(t, err)
		assert.Equal(t, "bob", got.Subject, "another subject's session lives on")

		n, err = s.RevokeAll(ctx, "alice")
		require.NoError(t, err)
		assert.Zero(t, n, "nothing left to revoke")
		n, err = s.RevokeAll(ctx, "nobody")
		require.NoError(t, err)
		assert.Zero(t, n)

		fresh, err := s.Create(ctx, "alice", profile{})
		require.NoError(t, err)
		_, err = s.Get(ctx, fresh)
		assert.NoError(t, err, "a session created after RevokeAll works")
	})
}

func TestSessionStore_RevokeAll_ManySessionsInSeveralBatches(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		var tokens []string
		for range 600 { // more than one batch of the revoke script
			token, err := s.Create(ctx, "busy", profile{})
			require.NoError(t, err)
			tokens = append(tokens, token)
		}
		n, err := s.RevokeAll(ctx, "busy")
		require.NoError(t, err)
		assert.Equal(t, 600, n)
		for _, token := range []string{tokens[0], tokens[299], tokens[599]} {
			_, err := s.Get(ctx, token)
			assert.ErrorIs(t, err, redisrepo.ErrNotFound)
		}
		assert.Empty(t, dump(t, client, prefix))
	})
}

func TestSessionStore_TokenIsNeverStoredInRedis(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		var tokens []string
		for _, subject := range []string{"alice", "bob", "carol"} {
			token, err := s.Create(ctx, subject, profile{Name: subject})
			require.NoError(t, err)
			_, err = s.Get(ctx, token)
			require.NoError(t, err)
			tokens = append(tokens, token)
		}
		stored := dump(t, client, prefix)
		require.NotEmpty(t, stored)
		for _, token := range tokens {
			secret := token[9:]
			for k, v := range stored {
				assert.NotContains(t, k, secret, "a key holds a token's secret")
				assert.NotContains(t, v, secret, "the value of %s holds a token's secret", k)
			}
		}
	})
}

func TestSessionStore_HostileTokens_AreNotFoundWithoutTouchingRedis(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		real, err := s.Create(ctx, "u", profile{})
		require.NoError(t, err)
		flipped := []byte(real)
		flipped[20] = map[bool]byte{true: 'A', false: 'B'}[flipped[20] != 'A'] // still of the right shape: another, unknown token

		tests := []struct {
			name      string
			token     string
			malformed bool
		}{
			{"empty", "", true},
			{"short", "abc", true},
			{"one byte short", real[:51], true},
			{"one byte long", real + "A", true},
			{"very long", strings.Repeat("A", 1<<20), true},
			{"upper-case tag", strings.ToUpper(real[:8]) + real[8:], true},
			{"no dot", real[:8] + "x" + real[9:], true},
			{"padding", real[:51] + "=", true},
			{"glob", real[:8] + "." + strings.Repeat("*", 43), true},
			{"hash tag", "{" + real[1:7] + "}" + real[8:], true},
			{"NUL", real[:30] + "\x00" + real[31:], true},
			{"non-ASCII", real[:49] + "é" + real[51:], true},
			{"well-formed but unknown", string(flipped), false},
			{"another subject's tag", "00000000" + real[8:], false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.Get(ctx, tt.token)
				assert.ErrorIs(t, err, redisrepo.ErrNotFound, "Get")
				assert.NotErrorIs(t, err, redisrepo.ErrRedis)
				if tt.malformed {
					assert.ErrorIs(t, err, redisrepo.ErrInvalid)
					if len(tt.token) >= 20 {
						assert.NotContains(t, err.Error(), tt.token[9:20], "the error does not echo the token")
					}
				}
				err = s.Update(ctx, tt.token, profile{Admin: true})
				assert.ErrorIs(t, err, redisrepo.ErrNotFound, "Update")
				assert.NotErrorIs(t, err, redisrepo.ErrRedis)
				err = s.Delete(ctx, tt.token)
				assert.ErrorIs(t, err, redisrepo.ErrNotFound, "Delete")
				assert.NotErrorIs(t, err, redisrepo.ErrRedis)
			})
		}
		got, err := s.Get(ctx, real)
		require.NoError(t, err, "the real session survives")
		assert.False(t, got.Data.Admin)
	})
}

func TestSessionStore_BadArguments_ReturnErrInvalid(t *testing.T) {
	client, prefix := servicetestRedis(t)
	ctx := context.Background()
	_, err := redisrepo.NewSessionStore[profile](nil, redisrepo.SessionOptions{})
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "nil client")
	_, err = redisrepo.NewSessionStore[profile](client, redisrepo.SessionOptions{IdleTimeout: -time.Second})
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "negative IdleTimeout")
	_, err = redisrepo.NewSessionStore[profile](client, redisrepo.SessionOptions{Lifetime: time.Microsecond})
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "Lifetime under 1ms")

	s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
	_, err = s.Create(ctx, "", profile{})
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "Create with an empty subject")
	_, err = s.RevokeAll(ctx, "")
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "RevokeAll with an empty subject")
	assert.Empty(t, dump(t, client, prefix))
}

func TestSessionStore_Create_DropsIndexEntriesPastTheirDeadline(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		short := newSessions(t, client, prefix, redisrepo.SessionOptions{Lifetime: 200 * time.Millisecond})
		old, err := short.Create(ctx, "u", profile{})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			_, err := short.Get(ctx, old)
			return err != nil
		}, 5*time.Second, 20*time.Millisecond)

		long := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		_, err = long.Create(ctx, "u", profile{})
		require.NoError(t, err)
		index := prefix + "sess:{" + old[:8] + "}:u:u"
		n, err := client.ZCard(ctx, index).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "the session past its deadline left the index")
		assert.Positive(t, pttl(t, client, index), "the index expires with its last session")
	})
}

func TestSessionStore_RevokeAll_WhileSessionsAreCreatedEndsEveryEarlierOne(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := newSessions(t, client, prefix, redisrepo.SessionOptions{})
		var before []string
		for range 50 {
			token, err := s.Create(ctx, "u", profile{})
			require.NoError(t, err)
			before = append(before, token)
		}
		stop := make(chan struct{})
		created := make(chan int)
		go func() {
			n := 0
			defer func() { created <- n }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.Create(ctx, "u", profile{})
				if !assert.NoError(t, err) {
					return
				}
				n++
			}
		}()
		_, err := s.RevokeAll(ctx, "u")
		require.NoError(t, err)
		close(stop)
		t.Logf("%d sessions created while RevokeAll ran", <-created)
		for _, token := range before {
			_, err := s.Get(ctx, token)
			assert.ErrorIs(t, err, redisrepo.ErrNotFound, "a session created before RevokeAll")
		}
	})
}
