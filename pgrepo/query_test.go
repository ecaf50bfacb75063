package pgrepo_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/pgrepo"
)

func names(items []account) []string {
	out := make([]string, len(items))
	for i, a := range items {
		out[i] = a.Name
	}
	return out
}

func TestRepository_List_Predicates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i, name := range []string{"Ada", "Alan", "Bob", "Carol", "dave"} {
		a := account{Email: name + "@example.com", Name: name, Balance: int64(10 * (i + 1))}
		if i%2 == 0 {
			a.Note = ptr("note")
		}
		require.NoError(t, f.accounts.Insert(ctx, f.pool, &a))
	}

	tests := []struct {
		name  string
		where pgrepo.Predicate
		want  []string
	}{
		{"Eq", pgrepo.Eq("name", "Ada"), []string{"Ada"}},
		{"Ne", pgrepo.Ne("name", "Ada"), []string{"Alan", "Bob", "Carol", "dave"}},
		{"Lt", pgrepo.Lt("balance", 30), []string{"Ada", "Alan"}},
		{"Le", pgrepo.Le("balance", 30), []string{"Ada", "Alan", "Bob"}},
		{"Gt", pgrepo.Gt("balance", 30), []string{"Carol", "dave"}},
		{"Ge", pgrepo.Ge("balance", 30), []string{"Bob", "Carol", "dave"}},
		{"In", pgrepo.In("name", "Ada", "Bob", "Nobody"), []string{"Ada", "Bob"}},
		{"In nothing", pgrepo.In("name"), []string{}},
		{"Like", pgrepo.Like("name", "A%"), []string{"Ada", "Alan"}},
		{"Like is case-sensitive", pgrepo.Like("name", "d%"), []string{"dave"}},
		{"ILike", pgrepo.ILike("name", "%A%"), []string{"Ada", "Alan", "Carol", "dave"}},
		{"IsNull", pgrepo.IsNull("note"), []string{"Alan", "Carol"}},
		{"IsNotNull", pgrepo.IsNotNull("note"), []string{"Ada", "Bob", "dave"}},
		{"And", pgrepo.And(pgrepo.Gt("balance", 10), pgrepo.Lt("balance", 50)), []string{"Alan", "Bob", "Carol"}},
		{"Or", pgrepo.Or(pgrepo.Eq("name", "Ada"), pgrepo.Eq("name", "dave")), []string{"Ada", "dave"}},
		{"nested", pgrepo.Or(pgrepo.And(pgrepo.Like("name", "A%"), pgrepo.Gt("balance", 10)), pgrepo.IsNull("note")), []string{"Alan", "Carol"}},
		{"Not", pgrepo.Not(pgrepo.Like("name", "A%")), []string{"Bob", "Carol", "dave"}},
		{"empty And", pgrepo.And(), []string{"Ada", "Alan", "Bob", "Carol", "dave"}},
		{"empty Or", pgrepo.Or(), []string{}},
		{"hostile value", pgrepo.Eq("name", "x' OR '1'='1"), []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := f.accounts.List(ctx, f.pool, pgrepo.Query{Where: tt.where})
			require.NoError(t, err)
			assert.Equal(t, tt.want, append([]string{}, names(page.Items)...))
			assert.Empty(t, page.Next, "without a Limit there is one page")

			n, err := f.accounts.Count(ctx, f.pool, tt.where)
			require.NoError(t, err)
			assert.Equal(t, int64(len(tt.want)), n)
		})
	}
}

func TestRepository_List_BadQueryIsRejectedBeforeSQL(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		q    pgrepo.Query
		want error
	}{
		{"unknown where column", pgrepo.Query{Where: pgrepo.Eq("nope", 1)}, pgrepo.ErrInvalidColumn},
		{"unknown nested column", pgrepo.Query{Where: pgrepo.And(pgrepo.Eq("name", "x"), pgrepo.Or(pgrepo.IsNull(`"; DROP TABLE accounts; --`)))}, pgrepo.ErrInvalidColumn},
		{"Go field name instead of column", pgrepo.Query{Where: pgrepo.Eq("Name", "x")}, pgrepo.ErrInvalidColumn},
		{"ignored field", pgrepo.Query{Where: pgrepo.Eq("scratch", "x")}, pgrepo.ErrInvalidColumn},
		{"unknown sort column", pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Asc("name DESC; --")}}, pgrepo.ErrInvalidColumn},
		{"sorted twice", pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Asc("name"), pgrepo.Desc("name")}}, pgrepo.ErrInvalid},
		{"Eq nil", pgrepo.Query{Where: pgrepo.Eq("note", nil)}, pgrepo.ErrInvalid},
		{"nil in And", pgrepo.Query{Where: pgrepo.And(pgrepo.Eq("name", "x"), nil)}, pgrepo.ErrInvalid},
		{"Not nil", pgrepo.Query{Where: pgrepo.Not(nil)}, pgrepo.ErrInvalid},
		{"negative Limit", pgrepo.Query{Limit: -1}, pgrepo.ErrInvalid},
		{"negative Offset", pgrepo.Query{Offset: -1}, pgrepo.ErrInvalid},
		{"Limit above MaxLimit", pgrepo.Query{Limit: math.MaxInt}, pgrepo.ErrInvalid},
		{"Offset with After", pgrepo.Query{Offset: 1, After: "x"}, pgrepo.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := &countingDB{DB: f.pool}
			_, err := f.accounts.List(context.Background(), db, tt.q)
			assert.ErrorIs(t, err, tt.want)
			assert.Zero(t, db.calls, "no SQL ran")
		})
	}
}

func TestRepository_List_LargeLimitReturnsTheRowsThereAre(t *testing.T) {
	f := newFixture(t)
	f.insertAccount(t, "a@example.com", "A")

	page, err := f.accounts.List(context.Background(), f.pool, pgrepo.Query{Limit: pgrepo.MaxLimit})

	require.NoError(t, err)
	assert.Len(t, page.Items, 1)
	assert.Empty(t, page.Next)
}

func TestRepository_List_OffsetPagination(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var all []account
	for i := range 25 {
		all = append(all, account{Email: fmt.Sprintf("%02d@example.com", i), Name: fmt.Sprintf("n%02d", i)})
	}
	_, err := f.accounts.InsertMany(ctx, f.pool, all)
	require.NoError(t, err)

	var got []string
	for _, tc := range []struct{ offset, size int }{{0, 10}, {10, 10}, {20, 5}} {
		page, err := f.accounts.List(ctx, f.pool, pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Desc("name")}, Limit: 10, Offset: tc.offset})
		require.NoError(t, err)
		assert.Len(t, page.Items, tc.size)
		assert.Equal(t, tc.offset+tc.size < 25, page.Next != "", "Next says whether more rows follow")
		got = append(got, names(page.Items)...)
	}
	require.Len(t, got, 25)
	for i := range got {
		assert.Equal(t, fmt.Sprintf("n%02d", 24-i), got[i])
	}
}

// listAll follows Next cursors from the first page to the last.
func listAll(t *testing.T, f *fixture, q pgrepo.Query, between func()) []account {
	t.Helper()
	var out []account
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100000, "pagination does not end")
		page, err := f.accounts.List(context.Background(), f.pool, q)
		require.NoError(t, err)
		out = append(out, page.Items...)
		if page.Next == "" {
			return out
		}
		q.After = page.Next
		if between != nil {
			between()
		}
	}
}

func TestRepository_List_KeysetVisitsEveryRowOnceInOrder(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var vs []account
	for i := range 50 {
		// Few distinct balances, so that sort keys tie across page boundaries;
		// created_at is the same for every row of one COPY.
		vs = append(vs, account{Email: fmt.Sprintf("%02d@example.com", i), Name: fmt.Sprintf("n%d", i%4), Balance: int64(i % 7)})
	}
	_, err := f.accounts.InsertMany(ctx, f.pool, vs)
	require.NoError(t, err)

	orders := map[string][]pgrepo.Order{
		"default (id)":              nil,
		"id descending":             {pgrepo.Desc("id")},
		"balance":                   {pgrepo.Asc("balance")},
		"balance descending":        {pgrepo.Desc("balance")},
		"mixed directions":          {pgrepo.Desc("balance"), pgrepo.Asc("name")},
		"timestamp and text":        {pgrepo.Asc("created_at"), pgrepo.Desc("email")},
		"id first then other keys":  {pgrepo.Asc("id"), pgrepo.Asc("name")},
		"three keys, mixed, limit1": {pgrepo.Asc("name"), pgrepo.Desc("balance"), pgrepo.Desc("id")},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			whole, err := f.accounts.List(ctx, f.pool, pgrepo.Query{OrderBy: order})
			require.NoError(t, err)
			require.Len(t, whole.Items, 50)

			paged := listAll(t, f, pgrepo.Query{OrderBy: order, Limit: 7}, nil)

			assert.Equal(t, ids(whole.Items), ids(paged), "same rows, same order, none twice")
		})
	}
}

func ids(items []account) []int64 {
	out := make([]int64, len(items))
	for i, a := range items {
		out[i] = a.ID
	}
	return out
}

// TestRepository_List_KeysetStaysCorrectWhileRowsAreInserted pages through
// 10,000 rows while another goroutine inserts rows that sort before, among
// and after them between pages: every pre-existing row comes back exactly
// once. The inserter works in lock-step with the reader so that inserts
// land between every pair of pages, not only when the scheduler allows.
func TestRepository_List_KeysetStaysCorrectWhileRowsAreInserted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const rows = 10000
	vs := make([]account, rows)
	for i := range vs {
		vs[i] = account{Email: fmt.Sprintf("pre%05d@example.com", i), Name: "pre", Balance: int64(rand.IntN(1000))}
	}
	_, err := f.accounts.InsertMany(ctx, f.pool, vs)
	require.NoError(t, err)
	page, err := f.accounts.List(ctx, f.pool, pgrepo.Query{})
	require.NoError(t, err)
	pre := map[int64]bool{}
	for _, a := range page.Items {
		pre[a.ID] = true
	}
	require.Len(t, pre, rows)

	insert := make(chan struct{})
	inserted := make(chan error)
	go func() {
		defer close(inserted)
		batch := 0
		for range insert {
			batch++
			var vs []account
			for i := range 20 {
				vs = append(vs, account{Email: fmt.Sprintf("new%d-%d@example.com", batch, i), Name: "new", Balance: int64(rand.IntN(1000))})
			}
			_, err := f.accounts.InsertMany(ctx, f.pool, vs)
			inserted <- err
		}
	}()
	between := func() {
		insert <- struct{}{}
		require.NoError(t, <-inserted)
	}

	got := listAll(t, f, pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Asc("balance")}, Limit: 250}, between)
	close(insert)
	<-inserted

	seen := map[int64]int{}
	for _, a := range got {
		seen[a.ID]++
	}
	for id := range pre {
		assert.Equal(t, 1, seen[id], "pre-existing row %d", id)
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "row %d returned %d times", id, n)
	}
	for i := 1; i < len(got); i++ {
		require.LessOrEqual(t, got[i-1].Balance, got[i].Balance, "pages keep the order")
	}
	assert.Greater(t, len(got), rows, "rows inserted ahead of the cursor show up too")
}

func TestRepository_List_TamperedCursorReturnsErrInvalidCursor(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 5 {
		f.insertAccount(t, fmt.Sprintf("%d@example.com", i), fmt.Sprintf("n%d", i))
	}
	q := pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Asc("name")}, Limit: 2}
	page, err := f.accounts.List(ctx, f.pool, q)
	require.NoError(t, err)
	require.NotEmpty(t, page.Next)
	other, err := f.accounts.List(ctx, f.pool, pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Desc("name")}, Limit: 2})
	require.NoError(t, err)

	raw, err := base64.RawURLEncoding.DecodeString(page.Next)
	require.NoError(t, err)
	var c struct {
		O uint32            `json:"o"`
		K []json.RawMessage `json:"k"`
	}
	require.NoError(t, json.Unmarshal(raw, &c))
	with := func(k ...string) string {
		keys := make([]json.RawMessage, len(k))
		for i := range k {
			keys[i] = json.RawMessage(k[i])
		}
		b, err := json.Marshal(map[string]any{"o": c.O, "k": keys})
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}

	tests := map[string]string{
		"not base64":           "!!!",
		"not JSON":             base64.RawURLEncoding.EncodeToString([]byte("not json")),
		"JSON of another type": base64.RawURLEncoding.EncodeToString([]byte(`[1,2,3]`)),
		"another ordering":     other.Next,
		"too few keys":         with(`"n1"`),
		"too many keys":        with(`"n1"`, "2", "3"),
		"wrong key type":       with(`"n1"`, `"two"`),
		"NULL key":             with(`"n1"`, "null"),
		"overflowing key":      with(`"n1"`, "1e400"),
		"huge":                 strings.Repeat("A", 1<<20),
	}
	for name, cursor := range tests {
		t.Run(name, func(t *testing.T) {
			db := &countingDB{DB: f.pool}
			q := q
			q.After = cursor
			_, err := f.accounts.List(ctx, db, q)
			assert.ErrorIs(t, err, pgrepo.ErrInvalidCursor)
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.Zero(t, db.calls)
		})
	}

	t.Run("altered values of the right type only move the start", func(t *testing.T) {
		q := q
		q.After = with(`"n0"`, "0")
		page, err := f.accounts.List(ctx, f.pool, q)
		require.NoError(t, err)
		assert.Equal(t, []string{"n0", "n1"}, names(page.Items))
	})
}
