package redisrepo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// SessionOptions configures a SessionStore. The zero value is ready to use:
// every zero field means the default named in its comment.
type SessionOptions struct {
	// Prefix starts every key of the store. Default: "session:". Keys are
	// Prefix+"{"+tag+"}:s:"+SHA-256(token) for a session and
	// Prefix+"{"+tag+"}:u:"+subject for a subject's index, tag being derived
	// from the subject (see the package documentation).
	Prefix string

	// IdleTimeout ends a session that is not read for this long: every Get
	// pushes its expiry to now+IdleTimeout (never past Lifetime).
	// Default: 30 minutes.
	IdleTimeout time.Duration

	// Lifetime is the absolute lifetime of a session from Create: Get never
	// extends it. Default: 24 hours.
	Lifetime time.Duration

	// Codec encodes the session data. Default: JSON (encoding/json).
	Codec Codec
}

const (
	defaultSessionPrefix = "session:"
	defaultIdleTimeout   = 30 * time.Minute
	defaultLifetime      = 24 * time.Hour

	// A token is tag "." secret: tagLen lowercase hex digits naming the
	// subject's Cluster slot, then 32 random bytes in unpadded base64url.
	tagLen      = 8
	secretBytes = 32
	secretLen   = 43 // base64.RawURLEncoding.EncodedLen(secretBytes)
	tokenLen    = tagLen + 1 + secretLen
)

// Session is what Get returns: the subject the session was created for, its
// data, and the absolute end of its life (it ends earlier when idle).
type Session[T any] struct {
	Subject   string
	Data      T
	ExpiresAt time.Time
}

// SessionStore keeps sessions of data T in Redis under random bearer tokens.
// It is safe for concurrent use and holds no goroutines.
type SessionStore[T any] struct {
	client redis.UniversalClient
	prefix string
	// idleMS and lifeMS are ARGV, boxed once rather than on every call.
	idleMS any
	lifeMS any
	codec  Codec
}

// NewSessionStore returns a SessionStore over client (a *redis.Client,
// *redis.ClusterClient or *redis.Ring built by the caller). It returns an
// error wrapping ErrInvalid for a nil client or an out-of-range option.
func NewSessionStore[T any](client redis.UniversalClient, opts SessionOptions) (*SessionStore[T], error) {
	if client == nil {
		return nil, invalid("nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultSessionPrefix
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = defaultLifetime
	}
	if opts.IdleTimeout < time.Millisecond || opts.Lifetime < time.Millisecond {
		return nil, invalid("IdleTimeout %s and Lifetime %s must be at least 1ms", opts.IdleTimeout, opts.Lifetime)
	}
	if opts.Codec == nil {
		opts.Codec = JSON{}
	}
	return &SessionStore[T]{
		client: client,
		prefix: opts.Prefix,
		idleMS: any(strconv.FormatInt(opts.IdleTimeout.Milliseconds(), 10)),
		lifeMS: any(strconv.FormatInt(opts.Lifetime.Milliseconds(), 10)),
		codec:  opts.Codec,
	}, nil
}

// nowMS is the Unix millisecond of the Redis server's clock, the only clock
// the scripts use.
const nowMS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// sessionCreate stores a session hash (s: subject, a: absolute deadline,
// d: data) and adds its token hash to the subject's index, a sorted set
// scored by deadline that forgets sessions past their deadline and expires
// with the last of them. KEYS: session, index. ARGV: subject, data, idle ms,
// lifetime ms, token hash.
var sessionCreate = redis.NewScript(nowMS + `
local abs = now + tonumber(ARGV[4])
local exp = now + tonumber(ARGV[3])
if exp > abs then exp = abs end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'a', string.format('%.0f', abs), 'd', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', exp))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
redis.call('ZADD', KEYS[2], string.format('%.0f', abs), ARGV[5])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return string.format('%.0f', abs)
`)

// sessionGet reads a session and pushes its expiry to now+idle, never past
// its deadline. KEYS: session. ARGV: idle ms. Returns {subject, deadline,
// data} or nil.
var sessionGet = redis.NewScript(`local v = redis.call('HMGET', KEYS[1], 's', 'a', 'd')
if not v[1] then return false end
` + nowMS + `local abs = tonumber(v[2])
if abs <= now then
  redis.call('DEL', KEYS[1])
  return false
end
local exp = now + tonumber(ARGV[1])
if exp > abs then exp = abs end
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', exp))
return v
`)

// sessionUpdate replaces the data of an existing session; its expiry is
// unchanged. KEYS: session. ARGV: data.
var sessionUpdate = redis.NewScript(`if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[1])
return 1
`)

// sessionDelete deletes a session and returns its subject (nil if there
// was none). KEYS: session.
var sessionDelete = redis.NewScript(`local s = redis.call('HGET', KEYS[1], 's')
if not s then return false end
redis.call('DEL', KEYS[1])
return s
`)

// sessionRevoke deletes the given sessions of a subject and removes them
// from its index. KEYS: index, session... ARGV: the sessions' hashes.
// Returns how many sessions existed.
var sessionRevoke = redis.NewScript(`local n = 0
for i = 1, #ARGV do
  n = n + redis.call('DEL', KEYS[i + 1])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
return n
`)

// tag returns the slot tag of subject: all of a subject's keys carry it in
// braces, so its sessions and its index share one Cluster slot.
func tag(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(sum[:tagLen/2])
}

func (s *SessionStore[T]) sessionKey(tag, hash string) string {
	return s.prefix + "{" + tag + "}:s:" + hash
}

func (s *SessionStore[T]) indexKey(tag, subject string) string {
	return s.prefix + "{" + tag + "}:u:" + subject
}

// parseToken checks that token has the shape Create gives and returns its
// tag and the hex SHA-256 of the whole token. A token of any other shape
// cannot name a session: the error wraps both ErrNotFound and ErrInvalid.
func parseToken(token string) (tag, hash string, err error) {
	if len(token) != tokenLen || token[tagLen] != '.' {
		return "", "", badToken(token)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		ok := i == tagLen ||
			i < tagLen && ('0' <= c && c <= '9' || 'a' <= c && c <= 'f') ||
			i > tagLen && ('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_')
		if !ok {
			return "", "", badToken(token)
		}
	}
	sum := sha256.Sum256([]byte(token))
	return token[:tagLen], hex.EncodeToString(sum[:]), nil
}

// badToken never echoes the token: it may be a live one, mistyped.
func badToken(token string) error {
	return fmt.Errorf("%w: %w: a session token of %d bytes that is not of the form Create returns; nothing was sent to Redis",
		ErrNotFound, ErrInvalid, len(token))
}

// Create starts a session for subject (a user id, say) holding data, and
// returns its token: a random bearer credential of 256 bits from
// crypto/rand, URL-safe, of a fixed length of 52 bytes. Only a SHA-256 of
// the token is stored. The session lives until it has not been read for
// IdleTimeout or until Lifetime after now, whichever comes first. It returns
// an error wrapping ErrInvalid for an empty subject, ErrCodec if data does
// not encode, ErrRedis if Redis fails (the session may then exist, but its
// token is lost: nobody can use it).
func (s *SessionStore[T]) Create(ctx context.Context, subject string, data T) (string, error) {
	if subject == "" {
		return "", invalid("empty subject")
	}
	payload, err := s.codec.Marshal(data)
	if err != nil {
		return "", codecErr("encoding session data (nothing stored)", err)
	}
	var secret [secretBytes]byte
	_, _ = rand.Read(secret[:]) // never fails (crypto/rand, Go 1.24+)
	tg := tag(subject)
	token := tg + "." + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(token))
	hash := hex.EncodeToString(sum[:])
	err = sessionCreate.Run(ctx, s.client,
		[]string{s.sessionKey(tg, hash), s.indexKey(tg, subject)},
		subject, payload, s.idleMS, s.lifeMS, hash).Err()
	if err != nil {
		return "", redisErr("creating a session", mayHaveChanged, err)
	}
	return token, nil
}

// Get returns the session of token and renews its idle timeout, in one
// round trip. It returns an error wrapping ErrNotFound when there is no such
// session (never created, expired, deleted or revoked) and also ErrInvalid
// when the token is not of the shape Create returns (then Redis is not
// called); ErrCodec when the stored data does not decode into T; ErrRedis
// when Redis fails (the expiry may then have been renewed).
func (s *SessionStore[T]) Get(ctx context.Context, token string) (Session[T], error) {
	var out Session[T]
	tg, hash, err := parseToken(token)
	if err != nil {
		return out, err
	}
	v, err := sessionGet.Run(ctx, s.client, []string{s.sessionKey(tg, hash)}, s.idleMS).Slice()
	switch {
	case errors.Is(err, redis.Nil):
		return out, fmt.Errorf("%w: no such session (expired, deleted or revoked)", ErrNotFound)
	case err != nil:
		return out, redisErr("reading a session", "its idle expiry may have been renewed", err)
	case len(v) != 3:
		return out, codecErr("reading a session", fmt.Errorf("unexpected reply %v", v))
	}
	subject, _ := v[0].(string)
	deadline, _ := v[1].(string)
	data, _ := v[2].(string)
	ms, err := strconv.ParseInt(deadline, 10, 64)
	if err != nil {
		return out, codecErr("reading a session's deadline", err)
	}
	// Decoding into a local rather than into out keeps out off the heap.
	var d T
	if err := s.codec.Unmarshal([]byte(data), &d); err != nil {
		return out, codecErr("decoding session data", err)
	}
	return Session[T]{Subject: subject, Data: d, ExpiresAt: time.UnixMilli(ms)}, nil
}

// Update replaces the data of the session of token; its expiry is not
// changed (Update is not a read: it does not renew the idle timeout). It
// returns an error wrapping ErrNotFound (and ErrInvalid for a malformed
// token) when there is no such session, ErrCodec if data does not encode,
// ErrRedis if Redis fails (the data may then have been replaced).
func (s *SessionStore[T]) Update(ctx context.Context, token string, data T) error {
	tg, hash, err := parseToken(token)
	if err != nil {
		return err
	}
	payload, err := s.codec.Marshal(data)
	if err != nil {
		return codecErr("encoding session data (nothing stored)", err)
	}
	n, err := sessionUpdate.Run(ctx, s.client, []string{s.sessionKey(tg, hash)}, payload).Int64()
	switch {
	case err != nil:
		return redisErr("updating a session", mayHaveChanged, err)
	case n == 0:
		return fmt.Errorf("%w: no such session (expired, deleted or revoked); nothing changed", ErrNotFound)
	}
	return nil
}

// Delete ends the session of token ("log out"). It returns an error wrapping
// ErrNotFound (and ErrInvalid for a malformed token) when there is no such
// session, ErrRedis if Redis fails (the session may or may not be gone; a
// retry is safe). It takes two round trips: the session is deleted in the
// first; the second removes it from its subject's index, and if it fails
// the index keeps a stale entry that RevokeAll and the deadline clean up.
func (s *SessionStore[T]) Delete(ctx context.Context, token string) error {
	tg, hash, err := parseToken(token)
	if err != nil {
		return err
	}
	subject, err := sessionDelete.Run(ctx, s.client, []string{s.sessionKey(tg, hash)}).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("%w: no such session (expired, deleted or revoked); nothing changed", ErrNotFound)
	case err != nil:
		return redisErr("deleting a session", mayHaveChanged, err)
	}
	if err := s.client.ZRem(ctx, s.indexKey(tg, subject), hash).Err(); err != nil {
		return redisErr("removing a deleted session from its subject's index", "the session is deleted; the index may keep a stale entry", err)
	}
	return nil
}

// revokeBatch bounds the keys of one revoke script call.
const revokeBatch = 256

// RevokeAll ends every session of subject ("log out everywhere", after a
// password change or an account deletion) and returns how many were live.
// Every session created before RevokeAll was called is ended when it returns
// nil; a session created while it runs may survive. It returns an error
// wrapping ErrInvalid for an empty subject and ErrRedis if Redis fails
// (some sessions may have been ended: retry).
func (s *SessionStore[T]) RevokeAll(ctx context.Context, subject string) (int, error) {
	if subject == "" {
		return 0, invalid("empty subject")
	}
	tg := tag(subject)
	index := s.indexKey(tg, subject)
	// Every session that exists now has a deadline no later than the
	// latest in the index now; sessions created from here on have later
	// ones (Redis's clock moves forward), so the rounds below, which take
	// only deadlines up to this cut-off, end even while the subject keeps
	// creating sessions.
	last, err := s.client.ZRangeWithScores(ctx, index, -1, -1).Result()
	if err != nil {
		return 0, redisErr("reading the sessions of a subject", nothingChanged, err)
	}
	if len(last) == 0 {
		return 0, nil
	}
	cutoff := strconv.FormatFloat(last[0].Score, 'f', -1, 64)
	total := 0
	for {
		hashes, err := s.client.ZRangeByScore(ctx, index, &redis.ZRangeBy{Min: "-inf", Max: cutoff, Count: revokeBatch}).Result()
		if err != nil {
			return total, redisErr(fmt.Sprintf("reading the sessions of a subject (%d ended so far)", total), mayHaveChanged, err)
		}
		if len(hashes) == 0 {
			return total, nil
		}
		keys := make([]string, 1, len(hashes)+1)
		keys[0] = index
		args := make([]any, len(hashes))
		for i, h := range hashes {
			keys = append(keys, s.sessionKey(tg, h))
			args[i] = h
		}
		n, err := sessionRevoke.Run(ctx, s.client, keys, args...).Int()
		if err != nil {
			return total, redisErr(fmt.Sprintf("ending the sessions of a subject (%d ended so far)", total), mayHaveChanged, err)
		}
		total += n
	}
}
