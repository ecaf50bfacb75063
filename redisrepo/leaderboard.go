package redisrepo

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Member is the constraint on leaderboard member types: strings and integers
// (and types defined over them, such as type UserID int64). In Redis a
// member is its decimal or string form; ties are ordered by that form.
type Member interface {
	~string | ~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// LeaderboardOptions configures a Leaderboard. The zero value is ready to
// use: every zero field means the default named in its comment.
type LeaderboardOptions struct {
	// Prefix starts the board's key: the key is Prefix+name, and
	// Prefix+name+":"+window start (such as ":20261130T000000Z") with a
	// Window. Default: "leaderboard:".
	Prefix string

	// Window splits the board into one key per window of this length
	// (Daily, Weekly, Hourly or any whole number of seconds), aligned on
	// Monday 1970-01-05 00:00 UTC: Daily boards start at midnight UTC,
	// Weekly ones on Monday 00:00 UTC. Reads and writes go to the window of
	// time.Now() unless At fixes another. Default: 0 (one key, no expiry).
	Window time.Duration

	// Retain is how long a window's key is kept after its window ends, so
	// that last week's board can still be read. Every write sets the key's
	// expiry to the window's end plus Retain. Default: one Window.
	Retain time.Duration
}

// Entry is one member of a board with its score and its 0-based rank (0 is
// the highest score) at the time of the read.
type Entry[M Member] struct {
	Member M
	Score  float64
	Rank   int64
}

// Page is one page of a board read with Leaderboard.Page. Next is the
// cursor of the following page; it is "" when the page holds fewer entries
// than asked for (the end of the board). A full last page still has a Next,
// which then gives an empty page with Next "".
type Page[M Member] struct {
	Entries []Entry[M]
	Next    string
}

// MaxPage bounds n in Top, Page and Around, so that a request parameter
// cannot make one call read a whole board.
const MaxPage = 1000

const defaultLeaderboardPrefix = "leaderboard:"

// Leaderboard is a board of members of type M ranked by a float64 score
// over a Redis sorted set: the highest score first and, among equal scores,
// members in descending byte order of their Redis form ("bob" before
// "alice", "9" before "10"), as ZREVRANGE orders them. It is safe for
// concurrent use and holds no goroutines.
type Leaderboard[M Member] struct {
	client redis.UniversalClient
	key    string
	window window
	kind   reflect.Kind
}

// NewLeaderboard returns the board called name over client (a
// *redis.Client, *redis.ClusterClient or *redis.Ring). Each board is one key
// (one per window), so any client kind works without hash tags. It returns
// an error wrapping ErrInvalid for a nil client, an empty name or an
// out-of-range option.
func NewLeaderboard[M Member](client redis.UniversalClient, name string, opts LeaderboardOptions) (*Leaderboard[M], error) {
	if client == nil {
		return nil, invalid("nil client")
	}
	if name == "" {
		return nil, invalid("empty leaderboard name")
	}
	w, err := newWindow(opts.Window, opts.Retain)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultLeaderboardPrefix
	}
	var zero M
	return &Leaderboard[M]{client: client, key: opts.Prefix + name, window: w, kind: reflect.TypeOf(zero).Kind()}, nil
}

// At returns the same board fixed to the window that holds t (last week's
// board: b.At(time.Now().AddDate(0, 0, -7))). Writing to a window whose key
// has already expired (its end plus Retain is past) stores nothing: the key
// expires at once. On a board without Window, At returns b.
func (b *Leaderboard[M]) At(t time.Time) *Leaderboard[M] {
	if b.window.period == 0 {
		return b
	}
	c := *b
	c.window.at = t
	return &c
}

// Key returns the Redis key that b reads and writes now (the key of the
// current window, or of At's).
func (b *Leaderboard[M]) Key() string {
	k, _ := b.current()
	return k
}

func (b *Leaderboard[M]) current() (key string, expireAtMS int64) {
	suffix, at, ok := b.window.current()
	if !ok {
		return b.key, 0
	}
	return b.key + suffix, at
}

func (b *Leaderboard[M]) format(m M) (string, error) {
	var s string
	switch v := reflect.ValueOf(m); b.kind {
	case reflect.String:
		s = v.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s = strconv.FormatInt(v.Int(), 10)
	default:
		s = strconv.FormatUint(v.Uint(), 10)
	}
	if s == "" {
		return "", invalid("empty member")
	}
	return s, nil
}

func (b *Leaderboard[M]) parse(s string) (M, error) {
	var m M
	v := reflect.ValueOf(&m).Elem()
	switch b.kind {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return m, codecErr(fmt.Sprintf("member %q is not a %s", s, v.Type()), err)
		}
		v.SetInt(n)
	default:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return m, codecErr(fmt.Sprintf("member %q is not a %s", s, v.Type()), err)
		}
		v.SetUint(n)
	}
	return m, nil
}

func formatScore(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// zaddExpire and zincrExpire write to a windowed board and set its expiry
// in the same call. KEYS: board. ARGV: score, member, expire-at ms.
var (
	zaddExpire = redis.NewScript(`redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1`)
	zincrExpire = redis.NewScript(`local s = redis.call('ZINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return s`)
)

// Add sets the score of m, adding m if it is not on the board. It returns an
// error wrapping ErrInvalid for a NaN score or an empty member, ErrRedis if
// Redis fails (the score may have been set).
func (b *Leaderboard[M]) Add(ctx context.Context, m M, score float64) error {
	member, err := b.format(m)
	if err != nil {
		return err
	}
	if math.IsNaN(score) {
		return invalid("NaN score")
	}
	key, at := b.current()
	if at == 0 {
		err = b.client.ZAdd(ctx, key, redis.Z{Score: score, Member: member}).Err()
	} else {
		err = zaddExpire.Run(ctx, b.client, []string{key}, formatScore(score), member, at).Err()
	}
	if err != nil {
		return redisErr("ZADD "+key, mayHaveChanged, err)
	}
	return nil
}

// Incr adds delta to the score of m (a member not on the board starts at 0)
// and returns the new score. It returns an error wrapping ErrInvalid for a
// NaN delta or an empty member, ErrRedis if Redis fails (the increment may
// have been applied: do not blindly retry a non-idempotent increment).
func (b *Leaderboard[M]) Incr(ctx context.Context, m M, delta float64) (float64, error) {
	member, err := b.format(m)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(delta) {
		return 0, invalid("NaN delta")
	}
	key, at := b.current()
	var score float64
	if at == 0 {
		score, err = b.client.ZIncrBy(ctx, key, delta, member).Result()
	} else {
		score, err = zincrExpire.Run(ctx, b.client, []string{key}, formatScore(delta), member, at).Float64()
	}
	if err != nil {
		return 0, redisErr("ZINCRBY "+key, mayHaveChanged, err)
	}
	return score, nil
}

func (b *Leaderboard[M]) notFound(member string) error {
	return fmt.Errorf("%w: member %q is not on leaderboard %s", ErrNotFound, member, b.Key())
}

// Score returns the score of m. It returns an error wrapping ErrNotFound
// when m is not on the board, ErrInvalid for an empty member, ErrRedis if
// Redis fails.
func (b *Leaderboard[M]) Score(ctx context.Context, m M) (float64, error) {
	member, err := b.format(m)
	if err != nil {
		return 0, err
	}
	key, _ := b.current()
	s, err := b.client.ZScore(ctx, key, member).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, b.notFound(member)
	case err != nil:
		return 0, redisErr("ZSCORE "+key, nothingChanged, err)
	}
	return s, nil
}

// Rank returns the 0-based rank of m: 0 for the highest score, ties ordered
// as the Leaderboard type describes. It returns an error wrapping
// ErrNotFound when m is not on the board, ErrInvalid for an empty member,
// ErrRedis if Redis fails.
func (b *Leaderboard[M]) Rank(ctx context.Context, m M) (int64, error) {
	member, err := b.format(m)
	if err != nil {
		return 0, err
	}
	key, _ := b.current()
	r, err := b.client.ZRevRank(ctx, key, member).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, b.notFound(member)
	case err != nil:
		return 0, redisErr("ZREVRANK "+key, nothingChanged, err)
	}
	return r, nil
}

// Len returns the number of members on the board (0 for a board or window
// never written or expired). It returns ErrRedis errors.
func (b *Leaderboard[M]) Len(ctx context.Context) (int64, error) {
	key, _ := b.current()
	n, err := b.client.ZCard(ctx, key).Result()
	if err != nil {
		return 0, redisErr("ZCARD "+key, nothingChanged, err)
	}
	return n, nil
}

// Remove takes m off the board. It returns an error wrapping ErrNotFound
// when m was not on it (nothing changed), ErrInvalid for an empty member,
// ErrRedis if Redis fails (m may have been removed; a retry is safe).
func (b *Leaderboard[M]) Remove(ctx context.Context, m M) error {
	member, err := b.format(m)
	if err != nil {
		return err
	}
	key, _ := b.current()
	n, err := b.client.ZRem(ctx, key, member).Result()
	switch {
	case err != nil:
		return redisErr("ZREM "+key, mayHaveChanged, err)
	case n == 0:
		return fmt.Errorf("%w; nothing changed", b.notFound(member))
	}
	return nil
}

func checkN(n int) error {
	if n < 1 || n > MaxPage {
		return invalid("n = %d is not in [1, %d]", n, MaxPage)
	}
	return nil
}

// Top returns the n highest members, best first (fewer if the board is
// smaller, none for an empty or expired board). It returns an error wrapping
// ErrInvalid when n is not in [1, MaxPage], ErrRedis if Redis fails,
// ErrCodec if a member is not an M.
func (b *Leaderboard[M]) Top(ctx context.Context, n int) ([]Entry[M], error) {
	if err := checkN(n); err != nil {
		return nil, err
	}
	key, _ := b.current()
	zs, err := b.client.ZRevRangeWithScores(ctx, key, 0, int64(n-1)).Result()
	if err != nil {
		return nil, redisErr("ZREVRANGE "+key, nothingChanged, err)
	}
	out := make([]Entry[M], len(zs))
	for i, z := range zs {
		s, _ := z.Member.(string)
		m, err := b.parse(s)
		if err != nil {
			return nil, err
		}
		out[i] = Entry[M]{Member: m, Score: z.Score, Rank: int64(i)}
	}
	return out, nil
}

// entries decodes the {start, {member, score, ...}} reply of the page and
// around scripts.
func (b *Leaderboard[M]) entries(v []any) ([]Entry[M], error) {
	if len(v) != 2 {
		return nil, codecErr("reading a leaderboard page", fmt.Errorf("unexpected reply %v", v))
	}
	start, _ := v[0].(int64)
	flat, _ := v[1].([]any)
	out := make([]Entry[M], 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		ms, _ := flat[i].(string)
		ss, _ := flat[i+1].(string)
		m, err := b.parse(ms)
		if err != nil {
			return nil, err
		}
		score, err := strconv.ParseFloat(ss, 64)
		if err != nil {
			return nil, codecErr(fmt.Sprintf("score %q of member %q", ss, ms), err)
		}
		out = append(out, Entry[M]{Member: m, Score: score, Rank: start + int64(i/2)})
	}
	return out, nil
}

// around returns the members from n ranks above m to n ranks below it.
// KEYS: board. ARGV: member, n. Returns {start rank, {member, score...}}
// or nil when m is not on the board.
var around = redis.NewScript(`local r = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not r then return false end
local n = tonumber(ARGV[2])
local s = r - n
if s < 0 then s = 0 end
return {s, redis.call('ZREVRANGE', KEYS[1], s, r + n, 'WITHSCORES')}
`)

// Around returns m with up to n members ranked just above it and up to n
// just below it, best first, read at one instant (one script). It returns
// an error wrapping ErrNotFound when m is not on the board, ErrInvalid when
// n is not in [1, MaxPage] or m is empty, ErrRedis if Redis fails.
func (b *Leaderboard[M]) Around(ctx context.Context, m M, n int) ([]Entry[M], error) {
	member, err := b.format(m)
	if err != nil {
		return nil, err
	}
	if err := checkN(n); err != nil {
		return nil, err
	}
	key, _ := b.current()
	v, err := around.Run(ctx, b.client, []string{key}, member, n).Slice()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, b.notFound(member)
	case err != nil:
		return nil, redisErr("reading around a member of "+key, nothingChanged, err)
	}
	return b.entries(v)
}

// page returns the n members that follow (score, member) in board order
// (score descending, then member in descending byte order). When the
// cursor's member still has the cursor's score its rank gives the position;
// otherwise the position is found by counting the higher scores and a
// binary search among the members tied at the cursor's score, comparing
// bytes (Lua's < would use the server's locale). KEYS: board. ARGV: "1" if
// there is a cursor, score, member, n. Returns {start rank, {member,
// score...}}.
var page = redis.NewScript(`local function less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local start = 0
if ARGV[1] == '1' then
  local s, m = ARGV[2], ARGV[3]
  local cur = redis.call('ZSCORE', KEYS[1], m)
  if cur and tonumber(cur) == tonumber(s) then
    start = redis.call('ZREVRANK', KEYS[1], m) + 1
  else
    local lo = redis.call('ZCOUNT', KEYS[1], '(' .. s, '+inf')
    local hi = lo + redis.call('ZCOUNT', KEYS[1], s, s)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local x = redis.call('ZREVRANGE', KEYS[1], mid, mid)[1]
      if less(m, x) then lo = mid + 1 else hi = mid end
    end
    start = lo
  end
end
local n = tonumber(ARGV[4])
return {start, redis.call('ZREVRANGE', KEYS[1], start, start + n - 1, 'WITHSCORES')}
`)

// Page returns up to n members in board order starting after cursor ("" for
// the first page), and the cursor of the next page ("" once a page comes
// back short; see the Page type).
//
// A cursor is the last (score, member) returned, not a rank, so paging stays
// correct while scores change: every member whose score does not change
// while the pages are read appears exactly once, in order, on some page; no
// page repeats a member. A member whose score changes meanwhile may be seen
// twice (it moved from before the cursor to after it) or not at all (it
// moved the other way), as with any keyset pagination. Entry.Rank is the
// rank at the time of each page's read.
//
// It returns an error wrapping ErrInvalid when n is not in [1, MaxPage] or
// cursor is not one Page returned, ErrRedis if Redis fails, ErrCodec if a
// member is not an M.
func (b *Leaderboard[M]) Page(ctx context.Context, cursor string, n int) (Page[M], error) {
	if err := checkN(n); err != nil {
		return Page[M]{}, err
	}
	has, score, member := "0", "", ""
	if cursor != "" {
		s, m, err := decodeCursor(cursor)
		if err != nil {
			return Page[M]{}, err
		}
		has, score, member = "1", s, m
	}
	key, _ := b.current()
	v, err := page.Run(ctx, b.client, []string{key}, has, score, member, n).Slice()
	if err != nil {
		return Page[M]{}, redisErr("reading a page of "+key, nothingChanged, err)
	}
	es, err := b.entries(v)
	if err != nil {
		return Page[M]{}, err
	}
	p := Page[M]{Entries: es}
	if len(es) == n {
		flat := v[1].([]any)
		last, _ := flat[len(flat)-2].(string)
		p.Next = encodeCursor(es[len(es)-1].Score, last)
	}
	return p, nil
}

// A cursor is base64url("<score>:<member>"): opaque to callers, readable
// when debugging. It holds no secret: a forged cursor only starts a page
// elsewhere.
func encodeCursor(score float64, member string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(formatScore(score) + ":" + member))
}

func decodeCursor(c string) (score, member string, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", "", invalid("malformed leaderboard cursor: %v", err)
	}
	s, m, ok := strings.Cut(string(raw), ":")
	if !ok || m == "" {
		return "", "", invalid("malformed leaderboard cursor")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) {
		return "", "", invalid("malformed leaderboard cursor score %q", s)
	}
	// Redis reads +inf/-inf, not Go's +Inf/-Inf spelling, in ranges.
	return strings.ToLower(formatScore(f)), m, nil
}
