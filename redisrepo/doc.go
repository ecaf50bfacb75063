// Package redisrepo provides typed repositories over the Redis data
// structures that services otherwise write by hand on the raw client:
// sessions (hashes), leaderboards (sorted sets), counters (INCRBY) and locks
// (SET NX with a fencing counter). It is cacherepo's sibling: cacherepo is
// the cache-aside, one key per cached record; redisrepo holds what is not a
// cache, where Redis itself is the store. Both take a redis.UniversalClient
// the caller built (*redis.Client, *redis.ClusterClient, *redis.Ring), use
// Options structs whose zero value is the default, and report errors the
// same way. It imports no other polystore package.
//
// Every type works on Redis Cluster: an operation touches one key, or keys
// that share a hash tag and so one slot (a session and its subject's index;
// a lock and its fencing counter). Nothing holds a goroutine; nothing needs
// closing.
//
// # Errors
//
// Bad arguments and options return an error wrapping ErrInvalid before
// anything is sent to Redis. A missing session or leaderboard member is
// ErrNotFound (its dynamic type also has NotFound() bool). Every error from
// Redis or the connection wraps ErrRedis with the go-redis error reachable
// through errors.Is and errors.As, and says whether the call may have taken
// effect. ErrCodec is data that does not encode or decode; ErrLocked and
// ErrNotHeld are the lock outcomes.
//
// # Sessions
//
// SessionStore[T] keeps sessions of data T under random bearer tokens.
// A token is "<tag>.<secret>": the secret is 256 bits from crypto/rand in
// unpadded base64url, the tag the first 8 hex digits of SHA-256(subject).
// Redis holds only SHA-256(token):
//
//	Prefix{tag}:s:<sha256(token) hex>   hash: s=subject, a=deadline (Unix ms), d=data
//	Prefix{tag}:u:<subject>             sorted set: the subject's session hashes, scored by deadline
//
// so a dump of Redis, a replica or a backup hands out no live session; the
// token carries 256 random bits, so an unkeyed hash cannot be reversed or
// searched. Get is one round trip: a script reads the session and moves
// its expiry to now+IdleTimeout, never past the deadline of Create plus
// Lifetime. Deadlines come from the Redis server's clock (TIME), never the
// clients'.
//
// Why the tag: "log out everywhere" needs an index of a subject's sessions,
// and on Cluster a script may only touch keys of one slot, so a session and
// its index must share a slot; but Get knows only the token. Keying sessions
// by {subject} would need a second lookup to find the subject, and keeping
// the index in another slot would need two scripts (not atomic) or keys
// computed inside Lua, which Redis asks scripts not to do and Cluster cannot
// route. So the token itself names the subject's slot: the tag is in
// braces in both keys. It reveals 32 bits of a hash of the subject to whoever
// holds the token, who could use the session anyway. A token not of this
// exact shape (empty, too long, wrong alphabet) is refused with an error
// wrapping both ErrNotFound and ErrInvalid, without a Redis call.
//
// The index forgets a session when Delete or RevokeAll ends it, and drops
// entries past their deadline at each Create for the subject; it expires
// with its last session. A session ended by its idle timeout stays in the
// index until its deadline, which costs RevokeAll one DEL of nothing.
// Delete takes two round trips (the session, then its index entry; a
// failure between them leaves only such a stale entry). RevokeAll ends, in
// rounds of up to 256 sessions per script, every session created before it
// was called; a session created while it runs may survive it. It takes only
// deadlines up to the latest in the index when it starts, so it ends even
// while the subject keeps creating sessions.
//
// # Leaderboards
//
// Leaderboard[M] ranks members of type M (strings or integers) by a float64
// score in one sorted set: the highest score first (rank 0) and, among equal
// scores, members in descending byte order of their Redis form ("bob"
// before "alice"; for integers the decimal form, so "9" before "10"), as
// ZREVRANGE orders them. Page reads by rank with a cursor holding the last
// (score, member) read, not an offset: a member whose score does not change
// while a client pages is returned exactly once; a member whose score
// changes may be seen twice or not at all. With LeaderboardOptions.Window
// the board is one key per window (Daily, Weekly: Monday 00:00 UTC) that
// expires Retain after its window ends; At reads or writes another window.
//
// # Counters
//
// Counters are INCRBY on one key per counter (per window, with
// CounterOptions.Window: a rate limit per minute, a count per day), exact
// under any concurrency since Redis applies each increment atomically. A
// counter never incremented reads 0. GetMany reads many in one round trip:
// MGET on one node, a pipeline split per node on Cluster.
//
// # Locks
//
// Locker.TryLock and Locker.Lock take a named lock for a TTL with a random
// token; Renew and Release act only if the lock still holds that token
// (compared in Lua). Each acquisition also draws a fencing token, the INCR
// of a per-lock counter in the same script as the SET NX (both keys share
// the {name} hash tag), so fencing tokens increase in the order the lock was
// granted.
//
// What a lock in one Redis does not guarantee, and why fencing matters: the
// holder learns nothing when its lease ends. A GC pause, a swapped-out
// process or a slow network can outlast the TTL, after which another holder
// gets the lock while the first still believes it holds it; Redis expires
// keys by its own clock, so a jump of the server's clock ends leases early;
// replication is asynchronous, so a failover can lose both the lock and the
// latest fencing tokens (a new primary may grant the lock again and hand out
// a fence already used); and an allkeys-* maxmemory policy can evict either
// key (use noeviction for the locks' Redis). Mutual exclusion is therefore
// good for efficiency (work not done twice, mostly) and not for
// correctness. For correctness, pass Lock.Fence with every write the lock
// guards and have the store refuse a fence lower than the last it accepted
// (UPDATE ... SET fence = $f WHERE ... AND fence < $f), or take the lock in
// the store itself (a PostgreSQL row or advisory lock).
//
// Redlock (one lock over N independent Redis masters) is not offered: as
// Martin Kleppmann's analysis shows ("How to do distributed locking", 2016,
// https://martin.kleppmann.com/2016/02/08/how-to-do-distributed-locking.html),
// its safety rests on bounded pauses, network delays and clock drift, the
// very things that fail, and it produces no fencing token; where a lock must
// be correct it needs fencing or consensus (etcd, ZooKeeper) anyway, and
// where efficiency is enough one Redis suffices. Salvatore Sanfilippo's
// reply ("Is Redlock safe?", http://antirez.com/news/101) argues the timing
// assumptions are reasonable; this package takes the conservative side.
package redisrepo
