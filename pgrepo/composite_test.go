package pgrepo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/pgrepo"
)

// order has a composite primary key (tenant_id, order_no).
type order struct {
	TenantID  int32      `db:"tenant_id,pk"`
	OrderNo   string     `db:"order_no,pk"`
	Item      string     `db:"item"`
	Qty       int        `db:"qty"`
	Version   int        `db:"version,version"`
	DeletedAt *time.Time `db:"deleted_at,softdelete"`
}

// orderKey maps to the key columns by position.
type orderKey struct {
	TenantID int32
	OrderNo  string
}

// orderKeyByName maps by tag, in another order than the key's.
type orderKeyByName struct {
	OrderNo string `db:"order_no"`
	Tenant  int64  `db:"tenant_id"`
}

const orderSchema = `CREATE TABLE orders (
	tenant_id  integer NOT NULL,
	order_no   text NOT NULL,
	item       text NOT NULL,
	qty        integer NOT NULL CHECK (qty >= 0),
	version    integer NOT NULL,
	deleted_at timestamptz,
	PRIMARY KEY (tenant_id, order_no)
)`

func newOrders(t *testing.T) (*fixture, *pgrepo.Repository[order, orderKey]) {
	t.Helper()
	f := newFixture(t)
	_, err := f.pool.Exec(context.Background(), orderSchema)
	require.NoError(t, err)
	orders, err := pgrepo.New[order, orderKey]("orders")
	require.NoError(t, err)
	return f, orders
}

func TestRepository_CompositeKey_EveryMethodUsesBothColumns(t *testing.T) {
	f, orders := newOrders(t)
	ctx := context.Background()
	// The same order_no under two tenants: two rows.
	a := order{TenantID: 1, OrderNo: "A-1", Item: "apple", Qty: 1}
	b := order{TenantID: 2, OrderNo: "A-1", Item: "banana", Qty: 2}
	require.NoError(t, orders.Insert(ctx, f.pool, &a))
	require.NoError(t, orders.Insert(ctx, f.pool, &b))
	assert.Equal(t, 1, a.Version)

	got, err := orders.Get(ctx, f.pool, orderKey{1, "A-1"})
	require.NoError(t, err)
	assert.Equal(t, "apple", got.Item, "Get")
	ok, err := orders.Exists(ctx, f.pool, orderKey{2, "A-1"})
	require.NoError(t, err)
	assert.True(t, ok, "Exists")
	ok, err = orders.Exists(ctx, f.pool, orderKey{3, "A-1"})
	require.NoError(t, err)
	assert.False(t, ok, "Exists of another tenant's key")

	a.Qty = 10
	require.NoError(t, orders.Update(ctx, f.pool, &a))
	assert.Equal(t, 2, a.Version, "Update")
	stale := a
	stale.Version = 1
	assert.ErrorIs(t, orders.Update(ctx, f.pool, &stale), pgrepo.ErrConflict, "Update at a stale version")
	assert.ErrorIs(t, orders.Update(ctx, f.pool, &order{TenantID: 9, OrderNo: "A-1", Item: "x", Version: 1}), pgrepo.ErrNotFound, "Update of a missing key")

	patched, err := orders.Patch(ctx, f.pool, orderKey{1, "A-1"}, map[string]any{"item": "apricot"})
	require.NoError(t, err)
	assert.Equal(t, "apricot", patched.Item, "Patch")
	assert.Equal(t, 3, patched.Version)
	patched, err = orders.PatchVersion(ctx, f.pool, orderKey{1, "A-1"}, 3, map[string]any{"qty": 11})
	require.NoError(t, err)
	assert.Equal(t, 11, patched.Qty, "PatchVersion")
	_, err = orders.PatchVersion(ctx, f.pool, orderKey{1, "A-1"}, 3, map[string]any{"qty": 12})
	assert.ErrorIs(t, err, pgrepo.ErrConflict, "PatchVersion at a stale version")
	_, err = orders.PatchVersion(ctx, f.pool, orderKey{1, "nope"}, 1, map[string]any{"qty": 12})
	assert.ErrorIs(t, err, pgrepo.ErrNotFound, "PatchVersion of a missing key")
	for _, col := range []string{"tenant_id", "order_no"} {
		_, err = orders.Patch(ctx, f.pool, orderKey{1, "A-1"}, map[string]any{col: 5})
		assert.ErrorIs(t, err, pgrepo.ErrInvalidColumn, "a key column is not patched")
	}

	require.NoError(t, orders.Delete(ctx, f.pool, orderKey{1, "A-1"}))
	_, err = orders.Get(ctx, f.pool, orderKey{1, "A-1"})
	assert.ErrorIs(t, err, pgrepo.ErrNotFound, "Get after Delete")
	assert.Contains(t, err.Error(), "tenant_id=1 order_no=A-1", "the message names every key column")
	assert.ErrorIs(t, orders.Delete(ctx, f.pool, orderKey{1, "A-1"}), pgrepo.ErrNotFound, "Delete again")
	other, err := orders.Get(ctx, f.pool, orderKey{2, "A-1"})
	require.NoError(t, err)
	assert.Equal(t, b, other, "the other tenant's row is untouched")

	err = orders.Insert(ctx, f.pool, &order{TenantID: 2, OrderNo: "A-1", Item: "dup"})
	assert.ErrorIs(t, err, pgrepo.ErrDuplicate, "the composite primary key is unique")
}

func TestRepository_CompositeKey_IDFieldsMapByTagInAnyOrder(t *testing.T) {
	f, orders := newOrders(t)
	ctx := context.Background()
	byName, err := pgrepo.New[order, orderKeyByName]("orders")
	require.NoError(t, err)
	require.NoError(t, orders.Insert(ctx, f.pool, &order{TenantID: 7, OrderNo: "B-2", Item: "x"}))

	got, err := byName.Get(ctx, f.pool, orderKeyByName{OrderNo: "B-2", Tenant: 7})
	require.NoError(t, err)
	assert.Equal(t, "x", got.Item)
	require.NoError(t, byName.Delete(ctx, f.pool, orderKeyByName{OrderNo: "B-2", Tenant: 7}))
}

func TestRepository_CompositeKey_UpsertOnTheWholeKeyByDefault(t *testing.T) {
	f, orders := newOrders(t)
	ctx := context.Background()

	first := order{TenantID: 1, OrderNo: "A-1", Item: "apple", Qty: 1}
	require.NoError(t, orders.Upsert(ctx, f.pool, &first))
	other := order{TenantID: 2, OrderNo: "A-1", Item: "banana", Qty: 1}
	require.NoError(t, orders.Upsert(ctx, f.pool, &other))
	second := order{TenantID: 1, OrderNo: "A-1", Item: "apricot", Qty: 2}
	require.NoError(t, orders.Upsert(ctx, f.pool, &second))

	assert.Equal(t, 2, second.Version, "the existing row was updated")
	got, err := orders.Get(ctx, f.pool, orderKey{1, "A-1"})
	require.NoError(t, err)
	assert.Equal(t, "apricot", got.Item)
	n, err := orders.Count(ctx, f.pool, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
}

// TestRepository_CompositeKey_KeysetPagesBreakTiesOnEveryKeyColumn pages
// through rows whose sort column and first key column both tie across page
// boundaries: the key columns, all of them, make the order total.
func TestRepository_CompositeKey_KeysetPagesBreakTiesOnEveryKeyColumn(t *testing.T) {
	f, orders := newOrders(t)
	ctx := context.Background()
	var vs []order
	for tenant := range int32(3) {
		for i := range 9 {
			vs = append(vs, order{TenantID: tenant, OrderNo: fmt.Sprintf("N-%d", i), Item: "x", Qty: i % 2})
		}
	}
	n, err := orders.InsertMany(ctx, f.pool, vs)
	require.NoError(t, err)
	require.Equal(t, int64(len(vs)), n)

	for name, ordering := range map[string][]pgrepo.Order{
		"default (tenant_id, order_no)": nil,
		"qty":                           {pgrepo.Asc("qty")},
		"qty descending":                {pgrepo.Desc("qty")},
		"qty then tenant_id descending": {pgrepo.Asc("qty"), pgrepo.Desc("tenant_id")},
		"order_no only":                 {pgrepo.Asc("order_no")},
	} {
		t.Run(name, func(t *testing.T) {
			whole, err := orders.List(ctx, f.pool, pgrepo.Query{OrderBy: ordering})
			require.NoError(t, err)
			require.Len(t, whole.Items, len(vs))

			var paged []orderKey
			q := pgrepo.Query{OrderBy: ordering, Limit: 4}
			for pages := 0; ; pages++ {
				require.Less(t, pages, 100)
				page, err := orders.List(ctx, f.pool, q)
				require.NoError(t, err)
				for _, o := range page.Items {
					paged = append(paged, orderKey{o.TenantID, o.OrderNo})
				}
				if page.Next == "" {
					break
				}
				q.After = page.Next
			}

			want := make([]orderKey, len(whole.Items))
			for i, o := range whole.Items {
				want[i] = orderKey{o.TenantID, o.OrderNo}
			}
			assert.Equal(t, want, paged, "same rows, same order, none twice")
		})
	}

	whole, err := orders.List(ctx, f.pool, pgrepo.Query{})
	require.NoError(t, err)
	assert.Equal(t, order{TenantID: 0, OrderNo: "N-0", Item: "x", Version: 1}, whole.Items[0])
	assert.Equal(t, "N-1", whole.Items[1].OrderNo, "the default order is the key's columns ascending")
	assert.Equal(t, int32(1), whole.Items[9].TenantID)
}

func TestNew_CompositeKeyIDTypeIsChecked(t *testing.T) {
	type swapped struct { // untagged, in the wrong order, same type
		B string
		A string
	}
	type textPair struct {
		A string `db:"a,pk"`
		B string `db:"b,pk"`
	}
	type three struct {
		TenantID int32
		OrderNo  string
		Extra    int
	}
	type mixedTags struct {
		TenantID int32 `db:"tenant_id"`
		OrderNo  string
	}
	type wrongTag struct {
		TenantID int32  `db:"tenant_id"`
		OrderNo  string `db:"item"`
	}
	type wrongType struct {
		TenantID string
		OrderNo  string
	}
	type reversed struct { // untagged and reversed
		OrderNo  string
		TenantID int32
	}
	type withSkipped struct {
		TenantID int64
		Note     string `db:"-"`
		OrderNo  string
		hidden   bool
	}
	_ = withSkipped{}.hidden

	tests := []struct {
		name string
		new  func() error
		want string // "" when New succeeds
	}{
		{"scalar ID", func() error { _, err := pgrepo.New[order, int32]("orders"); return err }, "ID must be a struct with one field per key column, not int32"},
		{"too many fields", func() error { _, err := pgrepo.New[order, three]("orders"); return err }, "3 exported fields for the 2 key columns (tenant_id, order_no)"},
		{"some fields tagged", func() error { _, err := pgrepo.New[order, mixedTags]("orders"); return err }, "tag every field"},
		{"a tag that names no key column", func() error { _, err := pgrepo.New[order, wrongTag]("orders"); return err }, `no field tagged`},
		{"a field of the wrong type", func() error { _, err := pgrepo.New[order, wrongType]("orders"); return err }, `field TenantID of type string does not fit key column "tenant_id" of type int32`},
		{"untagged fields in another order", func() error { _, err := pgrepo.New[order, reversed]("orders"); return err }, `field OrderNo is at the position of key column "tenant_id" but its name says "order_no"`},
		{"untagged fields named for each other's column", func() error { _, err := pgrepo.New[textPair, swapped]("t"); return err }, `field B is at the position of key column "a"`},
		{"by position", func() error { _, err := pgrepo.New[order, orderKey]("orders"); return err }, ""},
		{"by tag", func() error { _, err := pgrepo.New[order, orderKeyByName]("orders"); return err }, ""},
		{"skipped and unexported fields do not count", func() error { _, err := pgrepo.New[order, withSkipped]("orders"); return err }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.new()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}
