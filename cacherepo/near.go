package cacherepo

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// NearOptions configures the near tier: an in-process cache of entries in
// front of Redis, kept coherent across the instances of a namespace by
// Redis pub/sub (see Options.Near).
type NearOptions struct {
	// MaxEntries bounds the tier in entries. Default: 10,000 (when MaxBytes
	// is 0); negative is invalid.
	MaxEntries int
	// MaxBytes bounds the tier in bytes instead: the sum of the keys' and
	// the encoded entries' lengths. Default: 0 (bound by MaxEntries);
	// negative, or set together with MaxEntries, is invalid.
	MaxBytes int64
	// TTL is how long an entry is served from the tier after it was stored
	// there, whatever its Redis TTL. It bounds staleness only if a message
	// is lost while the subscription still looks healthy (see the README);
	// normally an entry leaves the tier when any instance changes it.
	// Default: 1 minute; negative or under 1ms is invalid.
	TTL time.Duration
	// Shared declares T immutable (the callers never modify a value they
	// get, nor what its pointers, slices or maps refer to): the tier then
	// keeps the decoded value and hands that same value to every caller,
	// which saves the decode of each hit. Default: false (every caller
	// decodes a copy of its own from the stored bytes).
	Shared bool
}

const (
	defaultNearEntries = 10_000
	defaultNearTTL     = time.Minute
)

// nearTier holds encoded entries (values and tombstones) by Redis key, so
// that every reader decodes a copy of its own. An entry is stored only if
// no invalidation of its key's shard happened since the caller read it
// from Redis (epochs), so that a late store never reinstates a value an
// invalidation removed; while the subscription is down nothing is served
// or stored.
type nearTier struct {
	store   *otter.Cache[string, nearEntry]
	mu      [256]sync.Mutex
	epochs  [256]atomic.Uint64 // changed under mu
	healthy atomic.Bool
}

func newNearTier(o NearOptions) (*nearTier, error) {
	ttl := o.TTL
	if ttl == 0 {
		ttl = defaultNearTTL
	}
	oo := &otter.Options[string, nearEntry]{ExpiryCalculator: otter.ExpiryWriting[string, nearEntry](ttl)}
	if o.MaxBytes > 0 {
		oo.MaximumWeight = uint64(o.MaxBytes)
		oo.Weigher = func(k string, e nearEntry) uint32 { return uint32(min(len(k)+len(e.b), 1<<31)) }
	} else {
		oo.MaximumSize = o.MaxEntries
		if oo.MaximumSize == 0 {
			oo.MaximumSize = defaultNearEntries
		}
	}
	store, err := otter.New(oo)
	if err != nil {
		return nil, err
	}
	return &nearTier{store: store}, nil
}

// nearEntry is what the tier holds for a key: the entry as stored in Redis
// and, with NearOptions.Shared, the decoded value (a T).
type nearEntry struct {
	b []byte
	v any
}

// epoch is what a caller reads before it reads rk from Redis and passes to
// put afterwards.
func (n *nearTier) epoch(rk string) uint64 { return n.epochs[shard(rk)].Load() }

// get returns rk's entry when the tier is healthy and holds it.
func (n *nearTier) get(rk string) (nearEntry, bool) {
	if !n.healthy.Load() {
		return nearEntry{}, false
	}
	return n.store.GetIfPresent(rk)
}

// put stores entry, read from Redis after epoch was read, unless rk's shard
// was invalidated since or the subscription is down.
func (n *nearTier) put(rk string, entry nearEntry, epoch uint64) {
	i := shard(rk)
	n.mu[i].Lock()
	if n.healthy.Load() && n.epochs[i].Load() == epoch {
		n.store.Set(rk, entry)
	}
	n.mu[i].Unlock()
}

// wrote records this process's own write of entry to rk (entry.b nil: a
// Delete):
// stored if nothing invalidated rk's shard since epoch, dropped otherwise;
// either way the shard's epoch moves on, so that a reader that read rk from
// Redis before the write does not store what it read.
func (n *nearTier) wrote(rk string, entry nearEntry, epoch uint64) {
	i := shard(rk)
	n.mu[i].Lock()
	if entry.b != nil && n.healthy.Load() && n.epochs[i].Load() == epoch {
		n.store.Set(rk, entry)
	} else {
		n.store.Invalidate(rk)
	}
	n.epochs[i].Add(1)
	n.mu[i].Unlock()
}

// drop removes rk (another instance changed it).
func (n *nearTier) drop(rk string) { n.wrote(rk, nearEntry{}, 0) }

// flush empties the tier and refuses the stores of every read begun before.
func (n *nearTier) flush() {
	for i := range n.mu {
		n.mu[i].Lock()
		n.epochs[i].Add(1)
		n.mu[i].Unlock()
	}
	n.store.InvalidateAll()
}

// setHealthy turns serving on or off; both ways the tier is flushed, so
// that nothing read while messages could have been lost is served.
func (n *nearTier) setHealthy(ok bool) {
	if !ok {
		n.healthy.Store(false)
		n.flush()
		return
	}
	n.flush()
	n.healthy.Store(true)
}
