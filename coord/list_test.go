package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seeded is a saga row written directly into coord_saga by a list test.
type seeded struct {
	id, name string
	status   Status
	created  time.Time
	expired  time.Duration // how long ago the lease expired (negative: in the future)
}

func seed(t testing.TB, pool *pgxpool.Pool, rows ...seeded) {
	t.Helper()
	for _, r := range rows {
		_, err := pool.Exec(context.Background(), `insert into coord_saga (id, name, status, step, state, created_at, updated_at, lease_expires)
values ($1, $2, $3, 0, '{}', $4, $4, now() - $5 * interval '1 millisecond')`, r.id, r.name, r.status, r.created, r.expired.Milliseconds())
		require.NoError(t, err)
	}
}

func listCoordinator(t *testing.T) (*Coordinator, *pgxpool.Pool) {
	t.Helper()
	pool := servicetest.Postgres(t)
	c, err := New(context.Background(), pool, Options{})
	require.NoError(t, err)
	return c, pool
}

func ids(p Page) []string {
	out := make([]string, len(p.Sagas))
	for i, s := range p.Sagas {
		out[i] = s.ID
	}
	return out
}

// listAll follows the pages of f and returns the ids of each page.
func listAll(t *testing.T, c *Coordinator, f Filter) [][]string {
	t.Helper()
	var pages [][]string
	for {
		p, err := c.List(context.Background(), f)
		require.NoError(t, err)
		pages = append(pages, ids(p))
		if p.Next == "" {
			return pages
		}
		f.After = p.Next
		require.Less(t, len(pages), 100, "pages never end")
	}
}

var base = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func TestList_FiltersAndPagesNewestFirst(t *testing.T) {
	c, pool := listCoordinator(t)
	statuses := []Status{StatusSucceeded, StatusFailed, StatusCompensated, StatusRunning}
	var rows []seeded
	for i := range 10 {
		name := "a"
		if i%2 == 1 {
			name = "b"
		}
		rows = append(rows, seeded{fmt.Sprintf("s%d", i), name, statuses[i%4], base.Add(time.Duration(i) * time.Minute), -time.Hour})
	}
	seed(t, pool, rows...)
	// Two sagas created in the same microsecond are ordered by id.
	seed(t, pool, seeded{"s9b", "a", StatusSucceeded, base.Add(9 * time.Minute), -time.Hour})

	tests := []struct {
		name string
		f    Filter
		want [][]string
	}{
		{"every saga, 4 a page", Filter{Limit: 4}, [][]string{{"s9b", "s9", "s8", "s7"}, {"s6", "s5", "s4", "s3"}, {"s2", "s1", "s0"}}},
		{"default page size", Filter{}, [][]string{{"s9b", "s9", "s8", "s7", "s6", "s5", "s4", "s3", "s2", "s1", "s0"}}},
		{"one status", Filter{Statuses: []Status{StatusFailed}, Limit: 2}, [][]string{{"s9", "s5"}, {"s1"}}},
		{"two statuses", Filter{Statuses: []Status{StatusFailed, StatusRunning}, Limit: 3}, [][]string{{"s9", "s7", "s5"}, {"s3", "s1"}}},
		{"by name", Filter{Name: "b", Limit: 2}, [][]string{{"s9", "s7"}, {"s5", "s3"}, {"s1"}}},
		{"time range", Filter{CreatedFrom: base.Add(2 * time.Minute), CreatedBefore: base.Add(5 * time.Minute)}, [][]string{{"s4", "s3", "s2"}}},
		{"page size exactly the rows: no empty last page", Filter{Name: "b", Limit: 5}, [][]string{{"s9", "s7", "s5", "s3", "s1"}}},
		{"nothing matches", Filter{Name: "zzz"}, [][]string{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, listAll(t, c, tt.f))
		})
	}
}

func TestList_AnInsertBetweenPagesDoesNotShiftTheNextPage(t *testing.T) {
	c, pool := listCoordinator(t)
	seed(t, pool, seeded{"s0", "a", StatusSucceeded, base, 0}, seeded{"s1", "a", StatusSucceeded, base.Add(time.Minute), 0},
		seeded{"s2", "a", StatusSucceeded, base.Add(2 * time.Minute), 0})
	p, err := c.List(context.Background(), Filter{Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []string{"s2", "s1"}, ids(p))
	seed(t, pool, seeded{"s3", "a", StatusSucceeded, base.Add(3 * time.Minute), 0})
	p, err = c.List(context.Background(), Filter{Limit: 2, After: p.Next})
	require.NoError(t, err)
	assert.Equal(t, []string{"s0"}, ids(p))
}

func TestList_StuckShowsExpiredUnfinishedAndFailedSagas(t *testing.T) {
	c, pool := listCoordinator(t)
	seed(t, pool,
		seeded{"running-stuck", "a", StatusRunning, base, time.Hour},
		seeded{"compensating-stuck", "a", StatusCompensating, base.Add(time.Minute), 2 * time.Hour},
		seeded{"running-just-expired", "a", StatusRunning, base.Add(2 * time.Minute), time.Second},
		seeded{"running-leased", "a", StatusRunning, base.Add(3 * time.Minute), -time.Hour},
		seeded{"failed", "a", StatusFailed, base.Add(4 * time.Minute), -time.Hour},
		seeded{"succeeded-expired", "a", StatusSucceeded, base.Add(5 * time.Minute), time.Hour},
		seeded{"compensated-expired", "a", StatusCompensated, base.Add(6 * time.Minute), time.Hour},
	)
	assert.Equal(t, [][]string{{"failed", "compensating-stuck"}, {"running-stuck"}},
		listAll(t, c, Filter{Stuck: time.Minute, Limit: 2}))
	assert.Equal(t, [][]string{{"failed"}},
		listAll(t, c, Filter{Stuck: time.Minute, Statuses: []Status{StatusFailed}}))
}

func TestList_InvalidFiltersAreErrInvalid(t *testing.T) {
	c, _ := listCoordinator(t)
	for name, f := range map[string]Filter{
		"negative limit":    {Limit: -1},
		"limit too large":   {Limit: MaxPageSize + 1},
		"unknown status":    {Statuses: []Status{"lost"}},
		"negative stuck":    {Stuck: -time.Second},
		"foreign cursor":    {After: "not-a-cursor"},
		"cursor without id": {After: "e30"}, // base64 of {}
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.List(context.Background(), f)
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}
}

// TestList_UsesAnIndexWithManyFinishedSagas checks the plan of List's
// queries on 200,000 finished sagas: each reads an index in the order of the
// page, no sequential scan and no sort of the table.
func TestList_UsesAnIndexWithManyFinishedSagas(t *testing.T) {
	c, pool := listCoordinator(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `insert into coord_saga (id, name, status, step, state, created_at, updated_at)
select 'done-' || i, case when i % 10 = 0 then 'rare' else 'common' end, case when i % 2 = 0 then 'succeeded' else 'compensated' end,
	4, '{}', now() - i * interval '1 second', now() - i * interval '1 second'
from generate_series(1, 200000) i`)
	require.NoError(t, err)
	seed(t, pool, seeded{"f1", "common", StatusFailed, base, -time.Hour}, seeded{"f2", "common", StatusFailed, base.Add(time.Minute), -time.Hour})
	_, err = pool.Exec(ctx, `analyze coord_saga`)
	require.NoError(t, err)

	first, err := c.List(ctx, Filter{Limit: 20})
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)

	tests := []struct {
		name  string
		f     Filter
		index string
	}{
		{"succeeded", Filter{Statuses: []Status{StatusSucceeded}, Limit: 20}, "coord_saga_status_created"},
		// Few rows: the planner may read a partial index and sort them.
		{"failed", Filter{Statuses: []Status{StatusFailed}}, ""},
		{"by name", Filter{Name: "rare", Limit: 20}, "coord_saga_name_created"},
		{"every saga, second page", Filter{Limit: 20, After: first.Next}, "coord_saga_created"},
		{"stuck", Filter{Stuck: time.Minute}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sql, args, _, err := listQuery(tt.f)
			require.NoError(t, err)
			var plan []byte
			require.NoError(t, pool.QueryRow(ctx, "explain (format json) "+sql, args...).Scan(&plan))
			t.Logf("%s:\n%s", tt.name, planText(t, pool, sql, args))
			var nodes []map[string]any
			require.NoError(t, json.Unmarshal(plan, &nodes))
			kinds := map[string]bool{}
			indexes := map[string]bool{}
			walkPlan(nodes[0]["Plan"].(map[string]any), kinds, indexes)
			assert.False(t, kinds["Seq Scan"], "sequential scan: %v", kinds)
			if tt.index != "" {
				assert.True(t, indexes[tt.index], "index %s not used: %v", tt.index, indexes)
				assert.False(t, kinds["Sort"], "sorts the rows: %v", kinds)
			}
		})
	}
}

func planText(t *testing.T, pool *pgxpool.Pool, sql string, args []any) string {
	rows, err := pool.Query(context.Background(), "explain "+sql, args...)
	require.NoError(t, err)
	defer rows.Close()
	var out string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		out += line + "\n"
	}
	return out
}

func walkPlan(n map[string]any, kinds, indexes map[string]bool) {
	kinds[n["Node Type"].(string)] = true
	if name, ok := n["Index Name"].(string); ok {
		indexes[name] = true
	}
	if subs, ok := n["Plans"].([]any); ok {
		for _, s := range subs {
			walkPlan(s.(map[string]any), kinds, indexes)
		}
	}
}

func TestCounts_CountsSagasByStatus(t *testing.T) {
	c, pool := listCoordinator(t)
	seed(t, pool, seeded{"a", "x", StatusFailed, base, 0}, seeded{"b", "x", StatusFailed, base, 0}, seeded{"c", "x", StatusSucceeded, base, 0})
	counts, err := c.Counts(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[Status]int64{StatusFailed: 2, StatusSucceeded: 1}, counts)
}
