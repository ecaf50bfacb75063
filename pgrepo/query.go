package pgrepo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
	"strings"
)

// Predicate is a condition on a repository's columns, built with Eq, Ne,
// Lt, Le, Gt, Ge, In, Like, ILike, IsNull, IsNotNull, And, Or and Not. Column
// names are checked against the table description when the query is built
// and reach SQL only quoted; values reach it only as bind parameters.
type Predicate interface {
	build(b *builder) error
}

type comparison struct {
	col, op string
	val     any
}

type inList struct {
	col  string
	vals []any
}

type nullCheck struct {
	col string
	not bool
}

type group struct {
	op   string // AND or OR
	kids []Predicate
}

type negation struct{ p Predicate }

// Eq matches rows where column = value. A nil value is rejected with
// ErrInvalid when the query is built (= NULL matches nothing): use IsNull.
func Eq(column string, value any) Predicate { return comparison{column, "=", value} }

// Ne matches rows where column <> value (rows where it is NULL do not match).
func Ne(column string, value any) Predicate { return comparison{column, "<>", value} }

// Lt matches rows where column < value.
func Lt(column string, value any) Predicate { return comparison{column, "<", value} }

// Le matches rows where column <= value.
func Le(column string, value any) Predicate { return comparison{column, "<=", value} }

// Gt matches rows where column > value.
func Gt(column string, value any) Predicate { return comparison{column, ">", value} }

// Ge matches rows where column >= value.
func Ge(column string, value any) Predicate { return comparison{column, ">=", value} }

// Like matches rows where column LIKE pattern (case-sensitive; % and _ are
// wildcards, as in SQL).
func Like(column string, pattern string) Predicate { return comparison{column, "LIKE", pattern} }

// ILike matches rows where column ILIKE pattern (case-insensitive LIKE).
func ILike(column string, pattern string) Predicate { return comparison{column, "ILIKE", pattern} }

// In matches rows where column equals one of values; with no values it
// matches nothing.
func In(column string, values ...any) Predicate { return inList{column, values} }

// IsNull matches rows where column IS NULL.
func IsNull(column string) Predicate { return nullCheck{column, false} }

// IsNotNull matches rows where column IS NOT NULL.
func IsNotNull(column string) Predicate { return nullCheck{column, true} }

// And matches rows that match every one of ps; with none it matches all.
func And(ps ...Predicate) Predicate { return group{"AND", ps} }

// Or matches rows that match at least one of ps; with none it matches none.
func Or(ps ...Predicate) Predicate { return group{"OR", ps} }

// Not matches rows that p does not match.
func Not(p Predicate) Predicate { return negation{p} }

// builder accumulates SQL text and its bind parameters.
type builder struct {
	t    *table
	sb   strings.Builder
	args []any
	cols []string // the column each argument is compared with, "" for none
}

// param writes a placeholder for v, compared with column col ("" for none).
func (b *builder) param(col string, v any) {
	b.args = append(b.args, v)
	b.cols = append(b.cols, col)
	b.sb.WriteString("$")
	b.sb.WriteString(strconv.Itoa(len(b.args)))
}

func (p comparison) build(b *builder) error {
	c, err := b.t.column(p.col)
	if err != nil {
		return err
	}
	if p.val == nil {
		return fmt.Errorf("%w: %s %s NULL never matches: use IsNull or IsNotNull", ErrInvalid, p.col, p.op)
	}
	b.sb.WriteString(c.quoted + " " + p.op + " ")
	b.param(c.name, p.val)
	return nil
}

func (p inList) build(b *builder) error {
	c, err := b.t.column(p.col)
	if err != nil {
		return err
	}
	if len(p.vals) == 0 {
		b.sb.WriteString("FALSE")
		return nil
	}
	b.sb.WriteString(c.quoted + " IN (")
	for i, v := range p.vals {
		if i > 0 {
			b.sb.WriteString(", ")
		}
		b.param(c.name, v)
	}
	b.sb.WriteString(")")
	return nil
}

func (p nullCheck) build(b *builder) error {
	c, err := b.t.column(p.col)
	if err != nil {
		return err
	}
	if p.not {
		b.sb.WriteString(c.quoted + " IS NOT NULL")
	} else {
		b.sb.WriteString(c.quoted + " IS NULL")
	}
	return nil
}

func (p group) build(b *builder) error {
	if len(p.kids) == 0 {
		if p.op == "AND" {
			b.sb.WriteString("TRUE")
		} else {
			b.sb.WriteString("FALSE")
		}
		return nil
	}
	b.sb.WriteString("(")
	for i, k := range p.kids {
		if i > 0 {
			b.sb.WriteString(" " + p.op + " ")
		}
		if k == nil {
			return fmt.Errorf("%w: nil predicate in %s", ErrInvalid, p.op)
		}
		if err := k.build(b); err != nil {
			return err
		}
	}
	b.sb.WriteString(")")
	return nil
}

func (p negation) build(b *builder) error {
	if p.p == nil {
		return fmt.Errorf("%w: Not(nil)", ErrInvalid)
	}
	b.sb.WriteString("NOT (")
	if err := p.p.build(b); err != nil {
		return err
	}
	b.sb.WriteString(")")
	return nil
}

// Order is one sort key of a query.
type Order struct {
	Column string
	Desc   bool // descending; false sorts ascending
}

// Asc sorts by column, ascending.
func Asc(column string) Order { return Order{Column: column} }

// Desc sorts by column, descending.
func Desc(column string) Order { return Order{Column: column, Desc: true} }

// Query selects rows for List. Its zero value lists every visible row in
// primary-key order.
type Query struct {
	// Where filters the rows. Default (nil): every visible row.
	Where Predicate
	// OrderBy sorts the rows; every primary-key column it does not name is
	// added after it (in the direction of the last key, in the order of the
	// pk fields), so that the order is total. Default (nil): the primary
	// key's columns ascending.
	OrderBy []Order
	// Limit is the most rows a page holds, at most MaxLimit. Default (0): no
	// limit, one page. A negative Limit is ErrInvalid.
	Limit int
	// Offset skips that many rows (offset pagination). Default 0. It cannot
	// be combined with After; a negative Offset is ErrInvalid.
	Offset int
	// After is the Next cursor of the previous page (keyset pagination): the
	// page starts right after the row it points to, wherever rows have been
	// inserted or deleted since. It only works with the same OrderBy. Keyset
	// pagination needs sort columns that are never NULL. Default (""): the
	// first page.
	After string
}

// MaxLimit is the largest Query.Limit that List accepts.
const MaxLimit = 1<<31 - 2

// Page is one page of a List.
type Page[T any] struct {
	// Items holds the rows of the page, at most Query.Limit of them.
	Items []T
	// Next is an opaque cursor to pass as Query.After for the next page, or
	// "" when this page is the last one (always "" without a Limit).
	Next string
}

// List returns the visible rows that q selects. It returns an error
// wrapping ErrInvalidColumn for a column the table does not have (before
// any SQL runs), ErrInvalidCursor for a cursor this repository and
// ordering did not produce, ErrInvalidValue (naming the column) for a
// predicate value that does not fit its column's type, and ErrInvalid for
// other bad queries.
func (r *Repository[T, ID]) List(ctx context.Context, db DB, q Query) (Page[T], error) {
	ctx, c := r.tel.start(ctx, opList, db)
	page, err := r.list(ctx, db, q)
	if err == nil {
		c.returned(len(page.Items))
	}
	c.end(ctx, err)
	return page, err
}

func (r *Repository[T, ID]) list(ctx context.Context, db DB, q Query) (Page[T], error) {
	if db == nil {
		return Page[T]{}, r.nilDB("list")
	}
	sel, err := r.buildList(q)
	if err != nil {
		return Page[T]{}, err
	}
	rows, err := db.Query(ctx, sel.sql, sel.args...)
	if err != nil {
		return Page[T]{}, translateParams(r.what("list", nil), err, sel.cols)
	}
	defer rows.Close()

	var items []T
	if q.Limit > 0 {
		// A large Limit is a bound, not a promise of rows: do not allocate
		// for all of it up front.
		items = make([]T, 0, min(q.Limit, 256)+1)
	}
	dst := make([]any, 0, len(r.t.cols))
	var zero T
	for rows.Next() {
		items = append(items, zero)
		dst = ptrs(dst[:0], reflect.ValueOf(&items[len(items)-1]).Elem(), r.t.cols)
		if err := rows.Scan(dst...); err != nil {
			return Page[T]{}, translate(r.what("list", nil), err)
		}
	}
	if err := rows.Err(); err != nil {
		return Page[T]{}, translateParams(r.what("list", nil), err, sel.cols)
	}

	page := Page[T]{Items: items}
	// One row more than the limit was asked for: its presence says whether
	// there is a next page, without an empty last page.
	if q.Limit > 0 && len(items) > q.Limit {
		page.Items = items[:q.Limit]
		page.Next, err = sel.cursor(reflect.ValueOf(&page.Items[q.Limit-1]).Elem())
		if err != nil {
			return Page[T]{}, err
		}
	}
	return page, nil
}

// Count returns how many visible rows match where (every visible row when
// where is nil). It returns an error wrapping ErrInvalidColumn for a column
// the table does not have (before any SQL runs) and ErrInvalid for another
// bad predicate (Eq with a nil value, a nil predicate in And or Or).
func (r *Repository[T, ID]) Count(ctx context.Context, db DB, where Predicate) (int64, error) {
	ctx, c := r.tel.start(ctx, opCount, db)
	n, err := r.count(ctx, db, where)
	c.end(ctx, err)
	return n, err
}

func (r *Repository[T, ID]) count(ctx context.Context, db DB, where Predicate) (int64, error) {
	if db == nil {
		return 0, r.nilDB("count")
	}
	b := &builder{t: r.t}
	b.sb.WriteString("SELECT count(*) FROM " + r.t.quoted)
	if err := r.where(b, where, nil); err != nil {
		return 0, err
	}
	var n int64
	if err := db.QueryRow(ctx, b.sb.String(), b.args...).Scan(&n); err != nil {
		return 0, translateParams(r.what("count", nil), err, b.cols)
	}
	return n, nil
}

// selection is a built List query.
type selection struct {
	sql   string
	args  []any
	cols  []string  // the column of each argument, for error messages
	keys  []*column // sort keys, the key columns not among them last
	order uint32    // fingerprint of the ordering, carried by cursors
}

// buildList turns q into SQL, validating every name before writing any.
func (r *Repository[T, ID]) buildList(q Query) (*selection, error) {
	if q.Limit < 0 || q.Offset < 0 {
		return nil, fmt.Errorf("%w: list %s: negative Limit or Offset", ErrInvalid, r.t.name)
	}
	if q.Limit > MaxLimit {
		return nil, fmt.Errorf("%w: list %s: Limit %d above %d", ErrInvalid, r.t.name, q.Limit, MaxLimit)
	}
	if q.Offset > 0 && q.After != "" {
		return nil, fmt.Errorf("%w: list %s: Offset and After together", ErrInvalid, r.t.name)
	}
	sel := &selection{}
	desc := make([]bool, 0, len(q.OrderBy)+1)
	seen := map[*column]bool{}
	for _, o := range q.OrderBy {
		c, err := r.t.column(o.Column)
		if err != nil {
			return nil, err
		}
		if seen[c] {
			return nil, fmt.Errorf("%w: list %s: column %q sorted twice", ErrInvalid, r.t.name, o.Column)
		}
		seen[c] = true
		sel.keys = append(sel.keys, c)
		desc = append(desc, o.Desc)
	}
	// Every key column the ordering lacks breaks ties, in the direction of
	// the last sort key, so that the order is total.
	last := len(desc) > 0 && desc[len(desc)-1]
	for _, c := range r.t.pk {
		if !seen[c] {
			sel.keys = append(sel.keys, c)
			desc = append(desc, last)
		}
	}
	h := fnv.New32a()
	for i, c := range sel.keys {
		fmt.Fprintf(h, "%s\x00%s\x00%t\x00", r.t.name, c.name, desc[i])
	}
	sel.order = h.Sum32()

	b := &builder{t: r.t}
	b.sb.WriteString("SELECT " + r.selectList + " FROM " + r.t.quoted)
	var after []any
	if q.After != "" {
		var err error
		if after, err = sel.decode(q.After); err != nil {
			return nil, err
		}
	}
	var extra func(*builder)
	if after != nil {
		extra = func(b *builder) { keysetAfter(b, sel.keys, desc, after) }
	}
	if err := r.where(b, q.Where, extra); err != nil {
		return nil, err
	}
	b.sb.WriteString(" ORDER BY ")
	for i, c := range sel.keys {
		if i > 0 {
			b.sb.WriteString(", ")
		}
		b.sb.WriteString(c.quoted)
		if desc[i] {
			b.sb.WriteString(" DESC")
		} else {
			b.sb.WriteString(" ASC")
		}
	}
	if q.Limit > 0 {
		b.sb.WriteString(" LIMIT ")
		b.param("", q.Limit+1)
	}
	if q.Offset > 0 {
		b.sb.WriteString(" OFFSET ")
		b.param("", q.Offset)
	}
	sel.sql, sel.args, sel.cols = b.sb.String(), b.args, b.cols
	return sel, nil
}

// where writes the WHERE clause: visibility, the caller's predicate and,
// when extra is not nil, what it writes.
func (r *Repository[T, ID]) where(b *builder, p Predicate, extra func(*builder)) error {
	sep := " WHERE "
	next := func() { b.sb.WriteString(sep); sep = " AND " }
	if r.t.deleted != nil {
		next()
		b.sb.WriteString(r.t.deleted.quoted + " IS NULL")
	}
	if p != nil {
		next()
		if err := p.build(b); err != nil {
			return err
		}
	}
	if extra != nil {
		next()
		extra(b)
	}
	return nil
}

// keysetAfter writes the condition "sorts after the row whose keys are
// after".
func keysetAfter(b *builder, keys []*column, desc []bool, after []any) {
	uniform := true
	for _, d := range desc {
		uniform = uniform && d == desc[0]
	}
	if uniform {
		// A row comparison, which an index on the keys can serve.
		op := " > "
		if desc[0] {
			op = " < "
		}
		b.sb.WriteString("(" + quotedList(keys, "") + ")" + op + "(")
		for i, v := range after {
			if i > 0 {
				b.sb.WriteString(", ")
			}
			b.param(keys[i].name, v)
		}
		b.sb.WriteString(")")
		return
	}
	// Mixed directions: (k1 > v1) OR (k1 = v1 AND k2 < v2) OR ...
	b.sb.WriteString("(")
	for i := range keys {
		if i > 0 {
			b.sb.WriteString(" OR ")
		}
		b.sb.WriteString("(")
		for j := range i {
			b.sb.WriteString(keys[j].quoted + " = ")
			b.param(keys[j].name, after[j])
			b.sb.WriteString(" AND ")
		}
		op := " > "
		if desc[i] {
			op = " < "
		}
		b.sb.WriteString(keys[i].quoted + op)
		b.param(keys[i].name, after[i])
		b.sb.WriteString(")")
	}
	b.sb.WriteString(")")
}

// cursorData is what a cursor holds: the ordering's fingerprint and the
// last row's sort-key values.
type cursorData struct {
	Order uint32            `json:"o"`
	Keys  []json.RawMessage `json:"k"`
}

// maxCursorLen bounds the cursors decode accepts, so that a hostile one
// cannot make it allocate much.
const maxCursorLen = 8 << 10

// cursor encodes the sort keys of rv, the last row of a page.
func (sel *selection) cursor(rv reflect.Value) (string, error) {
	cd := cursorData{Order: sel.order, Keys: make([]json.RawMessage, len(sel.keys))}
	for i, c := range sel.keys {
		raw, err := json.Marshal(rv.FieldByIndex(c.index).Interface())
		if err != nil {
			return "", fmt.Errorf("%w: column %q cannot be a keyset sort key: %w", ErrInvalid, c.name, err)
		}
		cd.Keys[i] = raw
	}
	raw, err := json.Marshal(cd)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// decode checks a cursor against the selection's ordering and returns its
// values, each in the Go type of its column.
func (sel *selection) decode(s string) ([]any, error) {
	if len(s) > maxCursorLen {
		return nil, fmt.Errorf("%w: too long", ErrInvalidCursor)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCursor, err)
	}
	var cd cursorData
	if err := json.Unmarshal(raw, &cd); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCursor, err)
	}
	if cd.Order != sel.order || len(cd.Keys) != len(sel.keys) {
		return nil, fmt.Errorf("%w: made for another ordering", ErrInvalidCursor)
	}
	vals := make([]any, len(sel.keys))
	for i, c := range sel.keys {
		if string(cd.Keys[i]) == "null" {
			return nil, fmt.Errorf("%w: NULL sort key %q", ErrInvalidCursor, c.name)
		}
		v := reflect.New(c.typ)
		if err := json.Unmarshal(cd.Keys[i], v.Interface()); err != nil {
			return nil, fmt.Errorf("%w: sort key %q: %w", ErrInvalidCursor, c.name, err)
		}
		vals[i] = v.Elem().Interface()
	}
	return vals, nil
}
