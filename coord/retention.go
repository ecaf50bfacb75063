package coord

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Retention configures the removal of finished sagas (Coordinator.Purge and
// the loop of Start). The zero value removes nothing in the loop.
type Retention struct {
	// After is the age (since the saga's last update) past which Start's
	// loop removes finished sagas: succeeded, compensated and resolved ones,
	// their history and their barrier rows. Failed, dead and unfinished
	// sagas are never removed. Keep it above the longest time a late
	// action of a step could still arrive (a barrier removed with its saga
	// no longer blocks it; Redis markers live BarrierTTL). Zero: Start
	// removes nothing. Negative is invalid.
	After time.Duration

	// Batch is how many sagas one statement removes: each batch is one
	// short statement that locks only the rows it removes. Negative is
	// invalid. Default (0): 500.
	Batch int

	// MongoBarriers are the MongoDB databases whose coord_barrier
	// collection holds MongoDelete's tombstones (the databases of the
	// collections the steps pass to MongoDelete): the tombstones of removed
	// sagas are removed from each. Default: none (the tombstones stay).
	MongoBarriers []*mongo.Database
}

func (r Retention) validate() error {
	switch {
	case r.After < 0:
		return fmt.Errorf("%w: negative Options.Retention.After %v", ErrInvalid, r.After)
	case r.Batch < 0:
		return fmt.Errorf("%w: negative Options.Retention.Batch %d", ErrInvalid, r.Batch)
	}
	for i, db := range r.MongoBarriers {
		if db == nil {
			return fmt.Errorf("%w: nil Options.Retention.MongoBarriers[%d]", ErrInvalid, i)
		}
	}
	return nil
}

const defaultPurgeBatch = 500

const (
	// purgeCandidatesSQL reads the oldest finished sagas older than $1
	// milliseconds, at most $2, through coord_saga_finished.
	purgeCandidatesSQL = `select id, name from coord_saga
where status in ('succeeded', 'compensated', 'resolved') and updated_at < now() - $1 * interval '1 millisecond'
order by updated_at limit $2`

	// purgeKeysSQL reads the step keys of the sagas $1 from their history:
	// the keys their barriers are stored under.
	purgeKeysSQL = `select distinct saga_id || '/' || step_name from coord_history where saga_id = any($1) and step_name <> ''`

	// purgeSQL removes the sagas $1 still finished (skipping rows another
	// transaction holds), their history, and the barrier rows $2.
	purgeSQL = `with v as (
	select id from coord_saga where id = any($1) and status in ('succeeded', 'compensated', 'resolved')
	for update skip locked
), b as (
	delete from coord_barrier where step_key = any($2)
), h as (
	delete from coord_history where saga_id in (select id from v)
), d as (
	delete from coord_saga where id in (select id from v) returning 1
) select count(*) from d`
)

// Purge removes the finished sagas (succeeded, compensated, resolved) whose
// last update is older than olderThan, with their history, their PgBarrier
// rows in the coordinator's database and their MongoDelete tombstones in
// Options.Retention.MongoBarriers (Redis markers expire on their own). It
// works in batches of Options.Retention.Batch sagas, oldest first, each one
// short statement that locks only the rows it removes, so running sagas
// are never blocked. Failed, dead and unfinished sagas are never removed.
//
// It returns how many sagas it removed. olderThan must be positive
// (ErrInvalid). On an error, the batches before it are removed and the
// rest is left for the next call: a tombstone removed before its saga's
// batch failed is harmless, the saga being finished.
func (c *Coordinator) Purge(ctx context.Context, olderThan time.Duration) (int, error) {
	c.settleFinals(ctx)
	if olderThan <= 0 {
		return 0, fmt.Errorf("%w: Purge: olderThan %v must be positive", ErrInvalid, olderThan)
	}
	batch := c.opts.Retention.Batch
	if batch == 0 {
		batch = defaultPurgeBatch
	}
	total := 0
	for {
		n, full, err := c.purgeBatch(ctx, olderThan, batch)
		total += n
		if err != nil {
			return total, fmt.Errorf("coord: purge (%d sagas removed before this error): %w", total, err)
		}
		if !full {
			return total, nil
		}
	}
}

// purgeBatch removes one batch; full reports whether there may be more.
func (c *Coordinator) purgeBatch(ctx context.Context, olderThan time.Duration, batch int) (int, bool, error) {
	rows, err := c.pool.Query(ctx, purgeCandidatesSQL, olderThan.Milliseconds(), batch)
	if err != nil {
		return 0, false, err
	}
	var ids, names []string
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			rows.Close()
			return 0, false, err
		}
		ids, names = append(ids, id), append(names, name)
	}
	if err := rows.Err(); err != nil {
		return 0, false, err
	}
	if len(ids) == 0 {
		return 0, false, nil
	}

	keys, err := c.stepKeys(ctx, ids, names)
	if err != nil {
		return 0, false, err
	}
	if len(c.opts.Retention.MongoBarriers) > 0 {
		tombs := make(bson.A, len(keys))
		for i, k := range keys {
			tombs[i] = k + ":compensate"
		}
		for _, db := range c.opts.Retention.MongoBarriers {
			_, err := db.Collection(mongoBarrierCollection).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: tombs}}}})
			if err != nil {
				return 0, false, fmt.Errorf("removing MongoDB tombstones from %s: %w", db.Name(), err)
			}
		}
	}
	var n int
	if err := c.pool.QueryRow(ctx, purgeSQL, ids, keys).Scan(&n); err != nil {
		return 0, false, err
	}
	return n, len(ids) == batch, nil
}

// stepKeys returns the step keys (StepKey) of the sagas ids (of the
// definitions names): from their history, and from the registered
// definitions for sagas logged before the history existed.
func (c *Coordinator) stepKeys(ctx context.Context, ids, names []string) ([]string, error) {
	rows, err := c.pool.Query(ctx, purgeKeysSQL, ids)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		add(k)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, id := range ids {
		d := c.sagas[names[i]]
		if d == nil {
			continue
		}
		for j := 0; d.stepName(j) != ""; j++ {
			add(id + "/" + d.stepName(j))
		}
	}
	return keys, nil
}
