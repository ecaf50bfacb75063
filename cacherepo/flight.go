package cacherepo

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// group collapses the concurrent loads of one key in one process into one
// flight. Unlike golang.org/x/sync/singleflight, whose DoChan runs the
// function on a goroutine of its own (where a panic cannot be recovered by
// anyone and ends the process), the flight runs on the goroutine of the
// caller that starts it: a loader's panic unwinds that caller's own stack,
// where its recover() or net/http's can catch it. The callers that join
// wait on done, each until its own context ends.
type group[T any] struct {
	mu sync.Mutex
	m  map[string]*flightCall[T]
	// ended counts the flights that finished, per shard of keys: a caller
	// reads its key's count before its Redis read and again when it finds
	// no flight to join; a change means a flight of the key (or of another
	// key of the shard) may have written after that read, so the read is
	// repeated before loading rather than load the key a second time.
	ended [256]atomic.Uint32
}

// epoch is the count of finished flights of key's shard.
func (g *group[T]) epoch(key string) uint32 { return g.ended[shard(key)].Load() }

// shard is FNV-1a of key, folded to a byte.
func shard(key string) uint8 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return uint8(h ^ h>>8 ^ h>>16 ^ h>>24)
}

// flightCall is one flight; f and err are set before done is closed.
type flightCall[T any] struct {
	done chan struct{}
	f    *flight[T]
	err  error
}

// join returns the flight of key, starting one (leader true) when there is
// none. The leader must call finish exactly once, panic or not.
func (g *group[T]) join(key string) (fc *flightCall[T], leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if fc, ok := g.m[key]; ok {
		return fc, false
	}
	if g.m == nil {
		g.m = make(map[string]*flightCall[T])
	}
	fc = &flightCall[T]{done: make(chan struct{})}
	g.m[key] = fc
	return fc, true
}

// finish hands the flight's outcome to the callers that joined it; callers
// that come after start a flight of their own.
func (g *group[T]) finish(key string, fc *flightCall[T], f *flight[T], err error) {
	g.ended[shard(key)].Add(1)
	g.mu.Lock()
	if g.m[key] == fc {
		delete(g.m, key)
	}
	g.mu.Unlock()
	fc.f, fc.err = f, err
	close(fc.done)
}

// forget makes later callers of key start a new flight; the callers that
// joined the current one still get its outcome.
func (g *group[T]) forget(key string) {
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
}

// panicked describes an abnormal end of a loader's goroutine, from a
// deferred function that saw the flag of a normal return unset: p is what
// recover() returned there (nil for runtime.Goexit, since Go 1.21 turns
// panic(nil) into a *runtime.PanicNilError). Called during the panic, it
// captures the stack down to the loader's frame.
func panicked(key string, p any) *PanicError {
	return &PanicError{Key: key, Value: p, Goexit: p == nil, Stack: debug.Stack()}
}
