package cacherepo

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// hub is a Cache's subscription to the pub/sub channel of its namespace,
// on which every instance announces the keys it changes: "sender key",
// where sender is the random id of the instance that wrote and key the
// Redis key. Messages only ever remove entries (from the near tier) or
// wake waiters (Lock), never carry values, so a late, duplicated or
// reordered message can at worst cost a reload. It runs one goroutine,
// stopped by Close (or when the Cache is garbage collected).
type hub struct {
	client  redis.UniversalClient
	channel string
	id      string
	near    *nearTier // nil without the near tier
	lost    func()    // counts EventSubscriptionLost

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	closed  bool // under mu

	healthy atomic.Bool
	cancel  context.CancelFunc
}

// pingEvery is how often an idle subscription is checked with a PING; two
// intervals without an answer mark it unhealthy.
const pingEvery = time.Second

func newHub(client redis.UniversalClient, channel, id string, near *nearTier, lost func()) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hub{client: client, channel: channel, id: id, near: near, lost: lost,
		waiters: map[string]map[chan struct{}]struct{}{}, cancel: cancel}
	ps := client.Subscribe(ctx) // no channel yet: it would dial here, and New must not wait
	go h.run(ctx, ps)
	return h
}

// close stops the subscription. It does not wait for the goroutine, which
// may be stuck in a handshake with a server that does not answer (go-redis
// honours no context there without ContextTimeoutEnabled); once closed, the
// hub never turns healthy again, and the goroutine ends as soon as its
// connection returns.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.healthy.Store(false)
	if h.near != nil {
		h.near.setHealthy(false)
	}
}

// run receives the channel's messages until the hub is closed. go-redis
// reconnects and subscribes again after an error; the confirmation of that
// subscription marks the hub healthy again.
func (h *hub) run(ctx context.Context, ps *redis.PubSub) {
	defer func() { _ = ps.Close() }()
	// Recorded even when it fails: go-redis subscribes again on the next
	// connection.
	_ = ps.Subscribe(ctx, h.channel)
	pinged := false     // a PING is out, unanswered
	subscribed := false // the current connection confirmed the subscription
	backoff := 10 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			if timeout && !pinged {
				// Idle: check that the connection still answers.
				pinged = true
				_ = ps.Ping(ctx)
				continue
			}
			// No answer to the PING within pingEvery, or the connection
			// failed: messages may be lost from now on.
			h.setHealthy(false)
			pinged = false
			if timeout {
				continue // an answer (Pong) or an error will follow
			}
			subscribed = false
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == h.channel {
				subscribed = true
				backoff = 10 * time.Millisecond
				h.setHealthy(true)
			}
		case *redis.Pong:
			// A late answer: the connection is alive and delivered every
			// message before it.
			if subscribed && !h.healthy.Load() {
				h.setHealthy(true)
			}
		case *redis.Message:
			h.handle(m.Payload)
		}
	}
}

func (h *hub) setHealthy(ok bool) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	lost := !ok && h.healthy.Load()
	if h.near != nil {
		h.near.setHealthy(ok)
	}
	h.healthy.Store(ok)
	h.mu.Unlock()
	if lost {
		h.lost()
	}
	if ok {
		// Waiters may have missed a message meanwhile: let them look.
		h.wakeAll()
	}
}

// handle acts on one message: "sender key".
func (h *hub) handle(payload string) {
	sender, rk, ok := strings.Cut(payload, " ")
	if !ok {
		return
	}
	if h.near != nil && sender != h.id {
		h.near.drop(rk)
	}
	h.wake(rk)
}

// wait registers a waiter for the next message about rk; cancel must be
// called when the waiter is done.
func (h *hub) wait(rk string) (ch chan struct{}, cancel func()) {
	ch = make(chan struct{}, 1)
	h.mu.Lock()
	set := h.waiters[rk]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		h.waiters[rk] = set
	}
	set[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.waiters[rk], ch)
		if len(h.waiters[rk]) == 0 {
			delete(h.waiters, rk)
		}
		h.mu.Unlock()
	}
}

func (h *hub) wake(rk string) {
	h.mu.Lock()
	for ch := range h.waiters[rk] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
}

func (h *hub) wakeAll() {
	h.mu.Lock()
	for _, set := range h.waiters {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	h.mu.Unlock()
}
