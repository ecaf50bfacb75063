package cacherepo

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"time"
)

// Every Redis value the Cache writes starts with a one-byte header, so that
// a hit, a cached not-found and a loader's lease are told apart with the one
// GET of the hit path, without a companion key:
//
//	'v' payload                          a value
//	'x' expiry(8) delta(4) payload       a value with its fresh expiry (soft
//	                                     expiry: EarlyRefresh, StaleIfError)
//	                                     in Unix ms, last load in ms; past
//	                                     it the value is stale, not a hit
//	't'                                  a tombstone (record not found)
//	'l' token(16 hex digits)             a lease: a loader is at work (Lock)
//	'i' token(16 hex digits)             an invalidation marker: what Delete
//	                                     and Invalidate leave for a while, so
//	                                     that a load that saw the key before
//	                                     them finds it changed
const (
	kindValue     = 'v'
	kindRefresh   = 'x'
	kindTombstone = 't'
	kindLease     = 'l'
	kindMarker    = 'i'

	refreshHeader = 1 + 8 + 4
)

var errBadEntry = errors.New("entry written by something other than cacherepo")

// entry is a parsed Redis value.
type entry struct {
	kind    byte
	payload []byte // kindValue, kindRefresh
	expiry  int64  // kindRefresh: Unix ms
	delta   uint32 // kindRefresh: ms
}

func parseEntry(b []byte) (entry, error) {
	if len(b) == 0 {
		return entry{}, errBadEntry
	}
	switch b[0] {
	case kindValue:
		return entry{kind: kindValue, payload: b[1:]}, nil
	case kindRefresh:
		if len(b) < refreshHeader {
			return entry{}, errBadEntry
		}
		return entry{
			kind:    kindValue,
			payload: b[refreshHeader:],
			expiry:  int64(binary.BigEndian.Uint64(b[1:9])),
			delta:   binary.BigEndian.Uint32(b[9:13]),
		}, nil
	case kindTombstone, kindLease, kindMarker:
		return entry{kind: b[0]}, nil
	}
	return entry{}, errBadEntry
}

// shouldRefresh is XFetch (Vattani, Chierichetti, Lowenstein, "Optimal
// Probabilistic Cache Stampede Prevention", VLDB 2015): refresh when
// now − delta·β·ln(u) ≥ expiry, u uniform in (0, 1].
func (e entry) shouldRefresh(now time.Time, beta float64) bool {
	if e.expiry == 0 || beta == 0 {
		return false
	}
	u := 1 - rand.Float64()
	early := -float64(e.delta) * beta * math.Log(u)
	return float64(now.UnixMilli())+early >= float64(e.expiry)
}

// softExpired reports whether e, a value entry, is past the expiry it
// carries (its fresh TTL): no longer a hit, only a stale value that
// Options.StaleIfError may serve when a load fails. Entries without an
// expiry (neither EarlyRefresh nor StaleIfError) never are.
func (e entry) softExpired(now time.Time) bool {
	return e.expiry != 0 && now.UnixMilli() >= e.expiry
}

// encodeValue returns the entry for payload. With refresh data, expiry is
// when the value expires and delta how long its load took.
func encodeValue(payload []byte, withRefresh bool, expiry time.Time, delta time.Duration) []byte {
	if !withRefresh {
		b := make([]byte, 1+len(payload))
		b[0] = kindValue
		copy(b[1:], payload)
		return b
	}
	b := make([]byte, refreshHeader+len(payload))
	b[0] = kindRefresh
	binary.BigEndian.PutUint64(b[1:9], uint64(expiry.UnixMilli()))
	ms := delta.Milliseconds() + 1 // never 0: a load always costs something
	binary.BigEndian.PutUint32(b[9:13], uint32(min(ms, math.MaxUint32)))
	copy(b[refreshHeader:], payload)
	return b
}

var tombstoneEntry = []byte{kindTombstone}

// newLease returns a lease entry with a fresh random token. Tokens need to
// be unique, not secret: 64 random bits.
func newLease() string { return newToken(kindLease) }

// newMarker returns an invalidation marker with a fresh random token: two
// Invalidates of one key leave different markers, so a load that saw the
// first is refused after the second.
func newMarker() string { return newToken(kindMarker) }

func newToken(kind byte) string {
	var b [1 + 16]byte
	b[0] = kind
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], rand.Uint64())
	hex.Encode(b[1:], n[:])
	return string(b[:])
}

// jitter spreads ttl uniformly over [ttl×(1−f), ttl×(1+f)], never below 1ms
// (PX takes whole milliseconds and 0 is an error).
func jitter(ttl time.Duration, f float64) time.Duration {
	if f > 0 {
		ttl = time.Duration(float64(ttl) * (1 + f*(2*rand.Float64()-1)))
	}
	return max(ttl, time.Millisecond)
}
