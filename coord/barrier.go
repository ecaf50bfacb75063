package coord

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

const (
	opAction     = "action"
	opCompensate = "compensate"
)

type stepCtxKey struct{}

type stepCtx struct {
	// The step's key is saga + "/" + name (see StepKey), built only when a
	// barrier needs it; name is "" when saga holds the whole key.
	saga, name string
	op         string
	// uncompensable: the step has no compensation (a pivot, a retriable
	// step, or a compensatable step without one), so no compensation ever
	// runs under its key.
	uncompensable bool
}

// key returns the step's key.
func (s *stepCtx) key() string {
	if s.name == "" {
		return s.saga
	}
	return s.saga + "/" + s.name
}

// withStep returns ctx for a try of the action or compensation (op) of the
// step whose StepKey is key, when nothing more is known about the run: the
// barriers then assume that the step's compensation may have run.
func withStep(ctx context.Context, key, op string) context.Context {
	return context.WithValue(ctx, stepCtxKey{}, &stepCtx{saga: key, op: op})
}

// withRunStep is withStep for a try of the step name of the saga id run by
// a coordinator, which tells the barriers what its log already proves, so
// that MongoInsert can skip its tombstone check (README.md, "The MongoDB
// barrier in one round trip"): compensable is false for a step without a
// compensation, which no compensation ever runs for.
func withRunStep(ctx context.Context, id, name, op string, compensable bool) context.Context {
	return context.WithValue(ctx, stepCtxKey{}, &stepCtx{saga: id, name: name, op: op, uncompensable: !compensable})
}

// compensationExcluded reports whether no compensation of s's step can
// have run before a command sent now: s is an action's, and its step has
// no compensation.
func (s *stepCtx) compensationExcluded() bool {
	return s.op == opAction && s.uncompensable
}

// isNil reports whether v is nil, or a nil pointer, map, slice, func,
// channel or interface inside an interface, which would panic on use.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// checkArgs returns an error wrapping ErrInvalid for the first nil value of
// the named arguments of fn.
func checkArgs(fn string, named ...any) error {
	for i := 0; i+1 < len(named); i += 2 {
		if isNil(named[i+1]) {
			return fmt.Errorf("%w: %s: nil %s", ErrInvalid, fn, named[i])
		}
	}
	return nil
}

func stepFrom(ctx context.Context) (*stepCtx, error) {
	s, ok := ctx.Value(stepCtxKey{}).(*stepCtx)
	if !ok {
		return nil, fmt.Errorf("%w: no saga step in the context: call barriers from a step's action or compensation", ErrInvalid)
	}
	return s, nil
}

// StepKey returns the deterministic key of the step whose action or
// compensation ctx belongs to: the saga id and the step name joined by "/".
// It is the same in every try, replay and recovery of the step, and the
// same for its action and its compensation. It returns "" outside a step.
func StepKey(ctx context.Context) string {
	s, ok := ctx.Value(stepCtxKey{}).(*stepCtx)
	if !ok {
		return ""
	}
	return s.key()
}

const pgBarrierSQL = `with a as (
	insert into coord_barrier (step_key, op) values ($1, 'action') on conflict do nothing returning 1
), c as (
	insert into coord_barrier (step_key, op) select $1, 'compensate' where $2 = 'compensate' on conflict do nothing returning 1
) select (select count(*) from a), (select count(*) from c)`

// PgBarrier makes a PostgreSQL write of a step's action or compensation take
// effect at most once. Call it first in the transaction that does the write
// (in a database where Migrate created coord_barrier), with the ctx the step
// got, and skip the write when it returns false. Its row commits or rolls
// back with the write, so:
//
//   - an action runs once: a replay finds its row and is skipped;
//   - a compensation runs once, and only for an action that took effect: a
//     compensation of an action that never ran (null compensation) is
//     skipped, and its row then blocks that action if it arrives late (no
//     hanging).
//
// A TxAction or TxCompensate on the coordinator's own pool does not need it:
// its log record already commits in the same transaction. PgBarrier returns
// an error wrapping ErrInvalid when ctx is not a step's or tx is nil. tx may
// be a pgx.Tx on another database or the Tx of a TxAction.
func PgBarrier(ctx context.Context, tx Tx) (bool, error) {
	if err := checkArgs("PgBarrier", "tx", tx); err != nil {
		return false, err
	}
	s, err := stepFrom(ctx)
	if err != nil {
		return false, err
	}
	var actionNew, compensateNew int64
	if err := tx.QueryRow(ctx, pgBarrierSQL, s.key(), s.op).Scan(&actionNew, &compensateNew); err != nil {
		return false, fmt.Errorf("coord: barrier %q: %w", s.key(), err)
	}
	if s.op == opAction {
		return actionNew == 1, nil
	}
	// A compensation applies when the action's row was there already (the
	// action ran) and its own row is new (it did not run before).
	return actionNew == 0 && compensateNew == 1, nil
}

// BarrierTTL is how long the Redis barrier markers are kept: recovery and
// replays of a step must happen within it.
const BarrierTTL = 7 * 24 * time.Hour

// redisSetScript sets KEYS[1] unless the action's marker KEYS[2] exists: the
// action ran already, or its compensation came first and left it.
var redisSetScript = redis.NewScript(`
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) == false then return 0 end
if tonumber(ARGV[2]) > 0 then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
	redis.call('SET', KEYS[1], ARGV[1])
end
return 1`)

// redisDelScript deletes KEYS[1] once, and only if the action ran: the
// compensation's marker KEYS[3] says it ran already; setting the action's
// marker KEYS[2] succeeds only if the action never ran, and then blocks it.
var redisDelScript = redis.NewScript(`
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) == false then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1`)

// redisMarkers returns the keys of the action's and the compensation's
// markers of key: beside key, so that they live under the same prefix.
func redisMarkers(key string, s *stepCtx) (action, compensate string) {
	// One concatenation each, the step's key included.
	if s.name == "" {
		return key + ":coord-barrier:" + s.saga + ":action", key + ":coord-barrier:" + s.saga + ":compensate"
	}
	return key + ":coord-barrier:" + s.saga + "/" + s.name + ":action", key + ":coord-barrier:" + s.saga + "/" + s.name + ":compensate"
}

// RedisSet sets key to value (with ttl, none when 0) as a step's action,
// atomically with a barrier marker, so that it takes effect at most once and
// never after the step's compensation (RedisDel) ran. It returns false when
// it did nothing for that reason. Markers are stored under key followed by
// ":coord-barrier:" for BarrierTTL; on Redis Cluster all these keys must
// hash to one slot (use a hash tag in key). ttl must be 0 (no expiry) or at
// least 1ms (Redis keeps milliseconds). RedisSet returns an error wrapping
// ErrInvalid when ctx is not a step's, client is nil, key is empty or ttl
// is negative or under 1ms, or the driver's error.
func RedisSet(ctx context.Context, client redis.Scripter, key string, value any, ttl time.Duration) (bool, error) {
	if err := checkArgs("RedisSet", "client", client); err != nil {
		return false, err
	}
	switch {
	case key == "":
		return false, fmt.Errorf("%w: RedisSet: empty key", ErrInvalid)
	case ttl < 0:
		return false, fmt.Errorf("%w: RedisSet: negative ttl %v", ErrInvalid, ttl)
	case ttl > 0 && ttl < time.Millisecond:
		return false, fmt.Errorf("%w: RedisSet: ttl %v is under 1ms", ErrInvalid, ttl)
	}
	s, err := stepFrom(ctx)
	if err != nil {
		return false, err
	}
	action, compensate := redisMarkers(key, s)
	n, err := redisSetScript.Run(ctx, client, []string{key, action, compensate}, value, ttl.Milliseconds(), BarrierTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("coord: redis set %q: %w", key, err)
	}
	return n == 1, nil
}

// RedisDel deletes key as the compensation of the step whose action was
// RedisSet(key): at most once, and not at all if that action never took
// effect, which it then blocks. It returns whether it deleted, and an error
// wrapping ErrInvalid when ctx is not a step's, client is nil or key is
// empty, or the driver's error.
func RedisDel(ctx context.Context, client redis.Scripter, key string) (bool, error) {
	if err := checkArgs("RedisDel", "client", client); err != nil {
		return false, err
	}
	if key == "" {
		return false, fmt.Errorf("%w: RedisDel: empty key", ErrInvalid)
	}
	s, err := stepFrom(ctx)
	if err != nil {
		return false, err
	}
	action, compensate := redisMarkers(key, s)
	n, err := redisDelScript.Run(ctx, client, []string{key, action, compensate}, BarrierTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("coord: redis del %q: %w", key, err)
	}
	return n == 1, nil
}

// mongoBarrierCollection holds the tombstones MongoDelete leaves.
const mongoBarrierCollection = "coord_barrier"

// MongoInsert inserts doc into coll as a step's action, at most once. doc
// must carry a deterministic _id (an id kept in the state, or StepKey): a
// replay then fails on the unique _id and does nothing. It also does
// nothing once the step's compensation (MongoDelete) ran, which leaves a
// tombstone in the coord_barrier collection of coll's database.
//
// The insert itself is atomic; the tombstone check before it is not atomic
// with it, since a server without transactions (FerretDB) cannot make it so.
// That is safe while one coordinator at a time runs the saga, which the
// lease ensures. The check costs a round trip, which MongoInsert skips when
// the coordinator's log already excludes the compensation: the step has
// none, or its run holds the lease (README.md, "The MongoDB barrier in one
// round trip"); the insert is then its only command. It returns whether it
// inserted, an error wrapping ErrInvalid when ctx is not a step's or coll
// or doc is nil, or the driver's error.
func MongoInsert(ctx context.Context, coll *mongo.Collection, doc any) (bool, error) {
	if err := checkArgs("MongoInsert", "collection", coll, "document", doc); err != nil {
		return false, err
	}
	s, err := stepFrom(ctx)
	if err != nil {
		return false, err
	}
	if !s.compensationExcluded() {
		tomb := coll.Database().Collection(mongoBarrierCollection)
		err = tomb.FindOne(ctx, bson.D{{Key: "_id", Value: s.key() + ":compensate"}}).Err()
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			return false, fmt.Errorf("coord: mongo barrier %q: %w", s.key(), err)
		}
	}
	if _, err := coll.InsertOne(ctx, doc); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		return false, fmt.Errorf("coord: mongo insert into %s: %w", coll.Name(), err)
	}
	return true, nil
}

// MongoDelete deletes the document with the given _id from coll as the
// compensation of the step whose action was MongoInsert. It first leaves a
// tombstone that keeps that action from inserting later (no hanging), then
// deletes; both are idempotent, so replays are harmless, and a compensation
// of an insert that never happened deletes nothing. It returns whether it
// deleted, an error wrapping ErrInvalid when ctx is not a step's or coll or
// id is nil, or the driver's error.
func MongoDelete(ctx context.Context, coll *mongo.Collection, id any) (bool, error) {
	if err := checkArgs("MongoDelete", "collection", coll, "id", id); err != nil {
		return false, err
	}
	s, err := stepFrom(ctx)
	if err != nil {
		return false, err
	}
	tomb := coll.Database().Collection(mongoBarrierCollection)
	_, err = tomb.InsertOne(ctx, bson.D{{Key: "_id", Value: s.key() + ":compensate"}, {Key: "at", Value: time.Now()}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return false, fmt.Errorf("coord: mongo barrier %q: %w", s.key(), err)
	}
	res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return false, fmt.Errorf("coord: mongo delete from %s: %w", coll.Name(), err)
	}
	return res.DeletedCount == 1, nil
}
