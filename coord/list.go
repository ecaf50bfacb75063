package coord

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Filter selects the sagas List returns. The zero value lists every saga,
// newest first, DefaultPageSize at a time.
type Filter struct {
	// Statuses keeps the sagas in one of these statuses. Default: any.
	Statuses []Status

	// Name keeps the sagas of this definition. Default: any.
	Name string

	// CreatedFrom and CreatedBefore keep the sagas created at or after
	// CreatedFrom and before CreatedBefore (the database's created_at).
	// Zero: unbounded.
	CreatedFrom, CreatedBefore time.Time

	// Stuck, when positive, keeps only the sagas that need a look: running
	// or compensating ones whose lease expired more than Stuck ago (no
	// coordinator is driving them: none runs their definition, or recovery
	// keeps failing), and the failed and dead ones. Statuses then further narrows
	// them. Negative is invalid.
	Stuck time.Duration

	// Limit is the page size: at most MaxPageSize. Zero: DefaultPageSize.
	// Negative is invalid.
	Limit int

	// After is the Next of the previous page ("" for the first page).
	After string
}

// Page sizes of List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Page is one page of List's result.
type Page struct {
	Sagas []Info
	// Next is the cursor of the following page (Filter.After), "" when this
	// page is the last.
	Next string
}

// cursor is the position of the last saga of a page: the keyset of the
// next one.
type cursor struct {
	CreatedAt time.Time `json:"c"`
	ID        string    `json:"i"`
}

// List returns one page of the sagas f selects, newest first (by creation
// time, then id). Pages are keyset pages: each reads only its own rows
// through an index, and a saga created between two pages does not shift
// the next one. It returns an error wrapping ErrInvalid for an invalid
// filter (unknown status, negative Limit or Stuck, Limit above
// MaxPageSize, a cursor List did not make); other errors wrap the
// driver's.
func (c *Coordinator) List(ctx context.Context, f Filter) (Page, error) {
	c.settleFinals(ctx)
	sql, args, limit, err := listQuery(f)
	if err != nil {
		return Page{}, err
	}
	rows, err := c.pool.Query(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("coord: listing sagas: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return Page{}, fmt.Errorf("coord: listing sagas: %w", err)
	}
	var p Page
	if len(recs) > limit {
		recs = recs[:limit]
		last := recs[limit-1]
		data, _ := json.Marshal(cursor{CreatedAt: last.CreatedAt, ID: last.ID})
		p.Next = base64.RawURLEncoding.EncodeToString(data)
	}
	p.Sagas = make([]Info, len(recs))
	for i, r := range recs {
		p.Sagas[i] = c.info(r)
	}
	return p, nil
}

// knownStatus reports whether s is one of the statuses of a saga.
func knownStatus(s Status) bool {
	switch s {
	case StatusRunning, StatusCompensating, StatusSucceeded, StatusCompensated, StatusFailed, StatusResolved, StatusDead:
		return true
	}
	return false
}

// listQuery is List's statement for f, its arguments and the page size; it
// reads one row more than the page to know whether another follows.
func listQuery(f Filter) (string, []any, int, error) {
	limit := f.Limit
	switch {
	case limit < 0:
		return "", nil, 0, fmt.Errorf("%w: negative Filter.Limit %d", ErrInvalid, limit)
	case limit > MaxPageSize:
		return "", nil, 0, fmt.Errorf("%w: Filter.Limit %d is above %d", ErrInvalid, limit, MaxPageSize)
	case f.Stuck < 0:
		return "", nil, 0, fmt.Errorf("%w: negative Filter.Stuck %v", ErrInvalid, f.Stuck)
	case limit == 0:
		limit = DefaultPageSize
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(f.Statuses) > 0 {
		ss := make([]string, len(f.Statuses))
		for i, s := range f.Statuses {
			if !knownStatus(s) {
				return "", nil, 0, fmt.Errorf("%w: unknown status %q", ErrInvalid, s)
			}
			ss[i] = string(s)
		}
		if len(ss) == 1 {
			where = append(where, "s.status = "+arg(ss[0]))
		} else {
			where = append(where, "s.status = any("+arg(ss)+"::text[])")
		}
	}
	if f.Name != "" {
		where = append(where, "s.name = "+arg(f.Name))
	}
	if !f.CreatedFrom.IsZero() {
		where = append(where, "s.created_at >= "+arg(f.CreatedFrom))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "s.created_at < "+arg(f.CreatedBefore))
	}
	if f.Stuck > 0 {
		where = append(where, "((s.status in ('running', 'compensating') and s.lease_expires < now() - "+arg(f.Stuck.Milliseconds())+
			" * interval '1 millisecond') or s.status in ('failed', 'dead'))")
	}
	if f.After != "" {
		var cur cursor
		data, err := base64.RawURLEncoding.DecodeString(f.After)
		if err == nil {
			err = json.Unmarshal(data, &cur)
		}
		if err != nil || cur.ID == "" {
			return "", nil, 0, fmt.Errorf("%w: Filter.After is not a cursor of List", ErrInvalid)
		}
		where = append(where, "(s.created_at, s.id) < ("+arg(cur.CreatedAt)+"::timestamptz, "+arg(cur.ID)+"::text)")
	}
	sql := selectSQL
	if len(where) > 0 {
		sql += " where " + strings.Join(where, " and ")
	}
	sql += " order by s.created_at desc, s.id desc limit " + arg(limit+1)
	return sql, args, limit, nil
}

// Counts returns how many sagas are in each status (statuses without any
// are absent). It reads the (status, created_at, id) index only. Its errors
// wrap the driver's.
func (c *Coordinator) Counts(ctx context.Context) (map[Status]int64, error) {
	c.settleFinals(ctx)
	rows, err := c.pool.Query(ctx, `select status, count(*) from coord_saga group by status`)
	if err != nil {
		return nil, fmt.Errorf("coord: counting sagas: %w", err)
	}
	counts := map[Status]int64{}
	var s Status
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&s, &n}, func() error {
		counts[s] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("coord: counting sagas: %w", err)
	}
	return counts, nil
}

// StoredState returns the state of the saga id as the log stores it: its
// JSON, or what Options.Codec made of it (a Sealer's sealed form, never
// the clear state). It is what a console may show. It returns an error
// wrapping ErrNotFound for an unknown id, ErrInvalid for an id Run would
// refuse; other errors wrap the driver's.
func (c *Coordinator) StoredState(ctx context.Context, id string) (json.RawMessage, error) {
	if err := checkText("saga id", id); err != nil {
		return nil, err
	}
	rec, err := c.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(rec.state), nil
}
