package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Repository reads and writes values of struct type T in one table whose
// primary key has Go type ID (a struct of the key's columns for a
// composite key, see New). It is built once with New and is safe for
// concurrent use; every method runs on the DB it is given, and returns an
// error wrapping ErrInvalid, running nothing, when that DB is nil.
type Repository[T any, ID any] struct {
	t *table

	selectList string    // every column, quoted, in struct order
	visible    string    // ` AND "deleted_at" IS NULL`, or "" without soft delete
	bump       string    // `"version" = "t"."version" + 1`, or "" without a version column
	insertCols []*column // written by Insert and InsertMany
	insertRet  []*column // filled back by Insert and Upsert
	updateCols []*column // written by Update
	updateRet  []*column // filled back by Update
	copyCols   []string  // COPY column list: insertCols then the version
	one        any       // 1 in the version column's Go type
	idFields   []int     // composite keys: the ID field of each key column; nil for one column

	// Column names of the bind parameters $1, $2, ... of sqlInsert (and
	// upserts) and sqlUpdate, for error messages.
	insertParams, updateParams []string

	sqlGet, sqlInsert, sqlUpdate, sqlExists, sqlDelete string

	upserts sync.Map // conflict column list -> upsert SQL

	tel *telemetry
}

// New describes the table called table (optionally schema-qualified,
// "schema.table") from the db struct tags of T. T must be a struct type.
// A field's tag is `db:"column,options"`, where options are any of:
//
//	pk          the primary key: one field, or several for a composite key
//	generated   set by the database on INSERT (serial, identity, DEFAULT now()):
//	            never written, read back by Insert and Upsert
//	readonly    never written (generated always as, trigger-maintained);
//	            read back by Insert, Update and Upsert
//	version     an integer optimistic-locking version: 1 on insert, +1 on
//	            every write, checked by Update and PatchVersion
//	softdelete  a nullable timestamp: Delete sets it to now(); Get, List,
//	            Count, Exists, Update, Patch and Delete ignore rows where it is set
//
// `db:"-"` skips a field; an untagged exported field maps to its name in
// snake_case (UserID to user_id); embedded structs are flattened, as
// pgx.RowToStructByName does.
//
// ID is the Go type of the primary key as the methods take it: the key
// field's type, a type assignable to it, or one of the same kind convertible
// to and from it (type UserID int64, or int, for an int64 key).
//
// For a composite key (pk on several fields), ID is a struct with one
// exported field per key column (fields tagged `db:"-"` do not count):
//
//	type OrderKey struct {
//		TenantID int32  // tenant_id, the first pk field of the row struct
//		OrderNo  string // order_no, the second
//	}
//
// Untagged fields map to the key columns by position, in the order of the
// pk fields of T; when every field has a db tag, each maps to the column
// its tag names, in any order. Each field's type must fit its column as
// above. A field at one key column's position whose snake_case name is
// another key column's is rejected, so that reordering the struct cannot
// swap two keys of the same type unnoticed. Upsert's default conflict
// target is then the whole key, and List breaks ties on every key column.
//
// New returns an error wrapping ErrInvalid for a struct with no primary key,
// two fields on one column, an unknown option, an option on a field type
// that cannot carry it, or an ID type that does not fit the key (naming
// both types; for a composite key, an ID that is not such a struct), so that
// a mismatch fails here and not at the first query.
//
// The repository traces and measures its calls with the global
// OpenTelemetry providers; NewWithOptions takes others.
func New[T any, ID any](table string) (*Repository[T, ID], error) {
	return NewWithOptions[T, ID](table, Options{})
}

// NewWithOptions is New with the OpenTelemetry providers of opts (see
// Options; the package documentation, Observability, lists what a
// repository emits).
func NewWithOptions[T any, ID any](table string, opts Options) (*Repository[T, ID], error) {
	t, err := describe(table, reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	r := &Repository[T, ID]{t: t, selectList: quotedList(t.cols, "")}
	id := reflect.TypeFor[ID]()
	if len(t.pk) == 1 {
		if pk := t.pk[0]; !keyTypeFits(id, pk.typ) {
			return nil, fmt.Errorf("%w: pgrepo.New[%s, %s](%q): ID type %s does not fit the primary key %q of type %s (field %s)",
				ErrInvalid, reflect.TypeFor[T](), id, table, id, pk.name, pk.typ, pk.field)
		}
	} else if r.idFields, err = t.keyFields(id); err != nil {
		return nil, fmt.Errorf("%w: pgrepo.New[%s, %s](%q): %v", ErrInvalid, reflect.TypeFor[T](), id, table, err)
	}
	if t.deleted != nil {
		r.visible = " AND " + t.deleted.quoted + " IS NULL"
	}
	for _, c := range t.cols {
		if c.writable() {
			r.insertCols = append(r.insertCols, c)
			r.copyCols = append(r.copyCols, c.name)
			if !c.pk {
				r.updateCols = append(r.updateCols, c)
			}
		}
		if c.generated || c.readonly || c.version {
			r.insertRet = append(r.insertRet, c)
		}
		if c.readonly || c.version {
			r.updateRet = append(r.updateRet, c)
		}
	}
	if v := t.version; v != nil {
		r.copyCols = append(r.copyCols, v.name)
		r.one = reflect.ValueOf(1).Convert(v.typ).Interface()
		r.bump = v.quoted + " = " + t.quoted + "." + v.quoted + " + 1"
	}

	pkWhere := " WHERE " + t.keyWhere(1) + r.visible
	r.sqlGet = "SELECT " + r.selectList + " FROM " + t.quoted + pkWhere
	r.sqlExists = "SELECT EXISTS (SELECT 1 FROM " + t.quoted + pkWhere + ")"
	if t.deleted != nil {
		set := t.deleted.quoted + " = now()"
		if r.bump != "" {
			set += ", " + r.bump
		}
		r.sqlDelete = "UPDATE " + t.quoted + " SET " + set + pkWhere
	} else {
		r.sqlDelete = "DELETE FROM " + t.quoted + pkWhere
	}
	r.sqlInsert = r.insertSQL("")
	r.sqlUpdate = r.updateSQL()
	r.insertParams = columnNames(r.insertCols)
	r.updateParams = append(columnNames(r.updateCols), columnNames(t.pk)...)
	if v := t.version; v != nil {
		r.updateParams = append(r.updateParams, v.name)
	}
	r.tel = newTelemetry(table, opts.TracerProvider, opts.MeterProvider)
	return r, nil
}

// insertSQL returns the INSERT statement, with onConflict (an ON CONFLICT
// clause or "") before its RETURNING list.
func (r *Repository[T, ID]) insertSQL(onConflict string) string {
	var names, params []string
	for i, c := range r.insertCols {
		names = append(names, c.quoted)
		params = append(params, "$"+strconv.Itoa(i+1))
	}
	if r.t.version != nil {
		names = append(names, r.t.version.quoted)
		params = append(params, "1")
	}
	var s string
	if len(names) == 0 {
		s = "INSERT INTO " + r.t.quoted + " DEFAULT VALUES"
	} else {
		s = "INSERT INTO " + r.t.quoted + " (" + strings.Join(names, ", ") + ") VALUES (" + strings.Join(params, ", ") + ")"
	}
	s += onConflict
	if len(r.insertRet) > 0 {
		s += " RETURNING " + quotedList(r.insertRet, "")
	}
	return s
}

// updateSQL returns the UPDATE statement of Update, or "" when the table has
// nothing Update could write.
func (r *Repository[T, ID]) updateSQL() string {
	var set []string
	for i, c := range r.updateCols {
		set = append(set, c.quoted+" = $"+strconv.Itoa(i+1))
	}
	n := len(r.updateCols)
	where := " WHERE " + r.t.keyWhere(n+1)
	if v := r.t.version; v != nil {
		set = append(set, r.bump)
		where += " AND " + v.quoted + " = $" + strconv.Itoa(n+len(r.t.pk)+1)
	}
	if len(set) == 0 {
		return ""
	}
	s := "UPDATE " + r.t.quoted + " SET " + strings.Join(set, ", ") + where + r.visible
	if len(r.updateRet) > 0 {
		s += " RETURNING " + quotedList(r.updateRet, "")
	}
	return s
}

// Get returns the row whose primary key is id. It returns an error wrapping
// ErrNotFound when there is none (or it is soft-deleted).
func (r *Repository[T, ID]) Get(ctx context.Context, db DB, id ID) (T, error) {
	ctx, c := r.tel.start(ctx, opGet, db)
	v, err := r.get(ctx, db, id)
	c.returnedOne(err)
	c.end(ctx, err)
	return v, err
}

func (r *Repository[T, ID]) get(ctx context.Context, db DB, id ID) (T, error) {
	if db == nil {
		var zero T
		return zero, r.nilDB("get")
	}
	var v T
	rv := reflect.ValueOf(&v).Elem()
	dst := ptrs(make([]any, 0, len(r.t.cols)), rv, r.t.cols)
	var row pgx.Row
	if r.idFields == nil {
		// Passing id itself, not keyArgs' slice, saves Get an allocation.
		row = db.QueryRow(ctx, r.sqlGet, id)
	} else {
		row = db.QueryRow(ctx, r.sqlGet, r.keyArgs(id)...)
	}
	if err := row.Scan(dst...); err != nil {
		var zero T
		return zero, translate(r.what("get", r.keyArgs(id)), err)
	}
	return v, nil
}

// Exists reports whether a visible row has the primary key id.
func (r *Repository[T, ID]) Exists(ctx context.Context, db DB, id ID) (bool, error) {
	ctx, c := r.tel.start(ctx, opExists, db)
	ok, err := r.exists(ctx, db, id)
	c.end(ctx, err)
	return ok, err
}

func (r *Repository[T, ID]) exists(ctx context.Context, db DB, id ID) (bool, error) {
	if db == nil {
		return false, r.nilDB("exists")
	}
	var ok bool
	key := r.keyArgs(id)
	if err := db.QueryRow(ctx, r.sqlExists, key...).Scan(&ok); err != nil {
		return false, translate(r.what("exists", key), err)
	}
	return ok, nil
}

// Insert writes v as a new row and fills its generated, readonly and version
// columns back from INSERT ... RETURNING. It returns an error wrapping
// ErrDuplicate, ErrForeignKey or ErrCheck when a constraint rejects the row,
// ErrNotNull or ErrInvalidValue when a value does not fit its column, and
// ErrInvalid for a nil v.
func (r *Repository[T, ID]) Insert(ctx context.Context, db DB, v *T) error {
	ctx, c := r.tel.start(ctx, opInsert, db)
	err := r.insert(ctx, db, v)
	c.affectedOne(err)
	c.end(ctx, err)
	return err
}

func (r *Repository[T, ID]) insert(ctx context.Context, db DB, v *T) error {
	if db == nil {
		return r.nilDB("insert into")
	}
	if v == nil {
		return fmt.Errorf("%w: insert into %s: nil value", ErrInvalid, r.t.name)
	}
	rv := reflect.ValueOf(v).Elem()
	args := values(make([]any, 0, len(r.insertCols)), rv, r.insertCols)
	var err error
	if len(r.insertRet) == 0 {
		_, err = db.Exec(ctx, r.sqlInsert, args...)
	} else {
		err = db.QueryRow(ctx, r.sqlInsert, args...).Scan(ptrs(make([]any, 0, len(r.insertRet)), rv, r.insertRet)...)
	}
	if err != nil {
		// what builds its message only on this path: Insert is hot.
		return translateParams(r.what("insert into", nil), err, r.insertParams)
	}
	return nil
}

// InsertMany writes all of vs in one COPY and returns how many rows it
// wrote: all of them or, on error, none. COPY returns nothing, so generated
// and readonly columns are not filled back into vs (read the rows again if
// you need them); the version column is written as 1. It returns an error
// wrapping ErrDuplicate, ErrForeignKey or ErrCheck when a constraint
// rejects a row, and ErrNotNull or ErrInvalidValue (naming the column and
// the row, counted from 1) when a value does not fit its column.
func (r *Repository[T, ID]) InsertMany(ctx context.Context, db DB, vs []T) (int64, error) {
	ctx, c := r.tel.start(ctx, opInsertMany, db)
	n, err := r.insertMany(ctx, db, vs)
	c.batch(len(vs))
	c.affected(n)
	c.end(ctx, err)
	return n, err
}

func (r *Repository[T, ID]) insertMany(ctx context.Context, db DB, vs []T) (int64, error) {
	if db == nil {
		return 0, r.nilDB("copy into")
	}
	if len(vs) == 0 {
		return 0, nil
	}
	src := &copySource[T]{rows: vs, cols: r.insertCols, one: r.one, buf: make([]any, 0, len(r.copyCols))}
	n, err := db.CopyFrom(ctx, r.t.ident, r.copyCols, src)
	if err != nil {
		return 0, translate(r.what("copy into", nil), err)
	}
	return n, nil
}

// copySource feeds a slice of structs to CopyFrom without building a
// [][]any first: pgx encodes each row before asking for the next, so one
// buffer serves every row.
type copySource[T any] struct {
	rows []T
	cols []*column
	one  any
	buf  []any
	i    int
}

func (s *copySource[T]) Next() bool { s.i++; return s.i <= len(s.rows) }
func (s *copySource[T]) Err() error { return nil }
func (s *copySource[T]) Values() ([]any, error) {
	s.buf = values(s.buf[:0], reflect.ValueOf(&s.rows[s.i-1]).Elem(), s.cols)
	if s.one != nil {
		s.buf = append(s.buf, s.one)
	}
	return s.buf, nil
}

// Update writes every writable column of v to the row with v's primary key.
// With a version column it writes only if the row still has v's version,
// and then stores the new version (old + 1) in v. It returns an error
// wrapping ErrConflict when the version is stale, ErrNotFound when no
// visible row has the key, ErrDuplicate, ErrForeignKey or ErrCheck when a
// constraint rejects the row, ErrNotNull or ErrInvalidValue when a value
// does not fit its column, and ErrInvalid for a nil v or a table with
// nothing to update.
func (r *Repository[T, ID]) Update(ctx context.Context, db DB, v *T) error {
	ctx, c := r.tel.start(ctx, opUpdate, db)
	err := r.update(ctx, db, v)
	c.affectedOne(err)
	c.end(ctx, err)
	return err
}

func (r *Repository[T, ID]) update(ctx context.Context, db DB, v *T) error {
	if db == nil {
		return r.nilDB("update")
	}
	if v == nil {
		return fmt.Errorf("%w: update %s: nil value", ErrInvalid, r.t.name)
	}
	if r.sqlUpdate == "" {
		return fmt.Errorf("%w: update %s: no writable column", ErrInvalid, r.t.name)
	}
	rv := reflect.ValueOf(v).Elem()
	args := values(make([]any, 0, len(r.updateCols)+len(r.t.pk)+1), rv, r.updateCols)
	args = values(args, rv, r.t.pk)
	pk := args[len(r.updateCols):]
	if r.t.version != nil {
		args = append(args, rv.FieldByIndex(r.t.version.index).Interface())
	}

	var err error
	if len(r.updateRet) == 0 {
		var tag pgconn.CommandTag
		tag, err = db.Exec(ctx, r.sqlUpdate, args...)
		if err == nil && tag.RowsAffected() == 0 {
			err = pgx.ErrNoRows
		}
	} else {
		// Scan into a copy, so that v changes only when the write happened.
		ret := reflect.New(rv.Type()).Elem()
		err = db.QueryRow(ctx, r.sqlUpdate, args...).Scan(ptrs(make([]any, 0, len(r.updateRet)), ret, r.updateRet)...)
		if err == nil {
			for _, c := range r.updateRet {
				rv.FieldByIndex(c.index).Set(ret.FieldByIndex(c.index))
			}
		}
	}
	if err == nil {
		return nil
	}
	if r.t.version != nil && errors.Is(err, pgx.ErrNoRows) {
		// Nothing matched key and version: tell a stale version from a
		// missing row.
		var exists bool
		if xerr := db.QueryRow(ctx, r.sqlExists, pk...).Scan(&exists); xerr != nil {
			return translate(r.what("update", pk), xerr)
		}
		if exists {
			return fmt.Errorf("%s: %w", r.what("update", pk), ErrConflict)
		}
	}
	return translateParams(r.what("update", pk), err, r.updateParams)
}

// Patch sets only the named columns of the row whose primary key is id and
// returns the row as it is after the change. With a version column it
// increments the version but does not check it (PatchVersion does). It
// returns an error wrapping ErrInvalidColumn for a name that is not a
// writable, non-key column of the table (before any SQL runs), ErrInvalid
// for no changes, ErrNotFound when no visible row has the key,
// ErrDuplicate, ErrForeignKey or ErrCheck when a constraint rejects the
// change, and ErrNotNull or ErrInvalidValue when a value does not fit its
// column (a nil for a NOT NULL column, "x" for an integer).
func (r *Repository[T, ID]) Patch(ctx context.Context, db DB, id ID, changes map[string]any) (T, error) {
	ctx, c := r.tel.start(ctx, opPatch, db)
	v, err := r.patch(ctx, db, "patch", id, nil, changes)
	c.affectedOne(err)
	c.end(ctx, err)
	return v, err
}

// PatchVersion is Patch with optimistic locking: it sets the named columns
// only if the row is still at version (as read by the caller), increments
// the version and returns the row as it is after the change, in one round
// trip. It returns an error wrapping ErrConflict when the row exists at
// another version (nothing written), ErrNotFound when no visible row has
// the key, ErrInvalid when the table has no version column or version is
// negative, and otherwise the errors of Patch.
func (r *Repository[T, ID]) PatchVersion(ctx context.Context, db DB, id ID, version int64, changes map[string]any) (T, error) {
	ctx, c := r.tel.start(ctx, opPatchVersion, db)
	v, err := r.patchVersion(ctx, db, id, version, changes)
	c.affectedOne(err)
	c.end(ctx, err)
	return v, err
}

func (r *Repository[T, ID]) patchVersion(ctx context.Context, db DB, id ID, version int64, changes map[string]any) (T, error) {
	var zero T
	if r.t.version == nil {
		return zero, fmt.Errorf("%w: patch %s: the table has no version column", ErrInvalid, r.t.name)
	}
	if version < 0 {
		return zero, fmt.Errorf("%w: patch %s: negative version %d", ErrInvalid, r.t.name, version)
	}
	return r.patch(ctx, db, "patch", id, &version, changes)
}

// patch runs Patch or, with a version, PatchVersion.
func (r *Repository[T, ID]) patch(ctx context.Context, db DB, op string, id ID, version *int64, changes map[string]any) (T, error) {
	if db == nil {
		var zero T
		return zero, r.nilDB(op)
	}
	var zero T
	if len(changes) == 0 {
		return zero, fmt.Errorf("%w: %s %s: no changes", ErrInvalid, op, r.t.name)
	}
	names := make([]string, 0, len(changes))
	for name := range changes {
		c, err := r.t.column(name)
		if err != nil {
			return zero, err
		}
		if !c.writable() || c.pk {
			return zero, fmt.Errorf("%w: %s %s: column %q is not writable", ErrInvalidColumn, op, r.t.name, name)
		}
		names = append(names, name)
	}
	// A stable order gives one SQL text per set of columns, which pgx's
	// statement cache can reuse.
	slices.Sort(names)
	key := r.keyArgs(id)
	args := make([]any, 0, len(names)+len(key)+1)
	params := names
	var b strings.Builder
	b.WriteString("UPDATE " + r.t.quoted + " SET ")
	for i, name := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		args = append(args, changes[name])
		b.WriteString(r.t.byName[name].quoted + " = $" + strconv.Itoa(len(args)))
	}
	if r.bump != "" {
		b.WriteString(", " + r.bump)
	}
	b.WriteString(" WHERE " + r.t.keyWhere(len(args)+1))
	args = append(args, key...)
	params = append(params, columnNames(r.t.pk)...)
	if version != nil {
		args = append(args, *version)
		params = append(params, r.t.version.name)
		b.WriteString(" AND " + r.t.version.quoted + " = $" + strconv.Itoa(len(args)))
	}
	b.WriteString(r.visible + " RETURNING " + r.selectList)

	var v T
	dst := ptrs(make([]any, 0, len(r.t.cols)), reflect.ValueOf(&v).Elem(), r.t.cols)
	err := db.QueryRow(ctx, b.String(), args...).Scan(dst...)
	if err == nil {
		return v, nil
	}
	if version != nil && errors.Is(err, pgx.ErrNoRows) {
		// Nothing matched key and version: tell a stale version from a
		// missing row.
		var exists bool
		if xerr := db.QueryRow(ctx, r.sqlExists, key...).Scan(&exists); xerr != nil {
			return zero, translate(r.what(op, key), xerr)
		}
		if exists {
			return zero, fmt.Errorf("%s: %w: the row is no longer at version %d (nothing written)", r.what(op, key), ErrConflict, *version)
		}
	}
	return zero, translateParams(r.what(op, key), err, params)
}

// Delete removes the row whose primary key is id or, when the table has a
// softdelete column, sets that column to now() (and increments the
// version), after which the row is hidden from every other method. It
// returns an error wrapping ErrNotFound when no visible row has the key and
// ErrForeignKey when another row still references it.
func (r *Repository[T, ID]) Delete(ctx context.Context, db DB, id ID) error {
	ctx, c := r.tel.start(ctx, opDelete, db)
	err := r.delete(ctx, db, id)
	c.affectedOne(err)
	c.end(ctx, err)
	return err
}

func (r *Repository[T, ID]) delete(ctx context.Context, db DB, id ID) error {
	if db == nil {
		return r.nilDB("delete")
	}
	key := r.keyArgs(id)
	tag, err := db.Exec(ctx, r.sqlDelete, key...)
	if err != nil {
		return translate(r.what("delete", key), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", r.what("delete", key), ErrNotFound)
	}
	return nil
}

// Upsert inserts v or, when a row already has the same values in the
// conflict columns (a unique constraint or index must cover exactly them;
// the primary key when none are named), overwrites that row's writable
// columns with v's. The version, if any, becomes 1 on insert and old + 1 on
// update without being checked (last writer wins); a soft-deleted row is
// revived. Generated, readonly and version columns are filled back into v.
// It returns an error wrapping ErrInvalidColumn for an unknown conflict
// column, ErrInvalid for a nil v, a conflict column named twice, or when
// no conflict column is named and
// the primary key is generated, ErrDuplicate, ErrForeignKey or ErrCheck
// when a constraint rejects the row, and ErrNotNull or ErrInvalidValue when
// a value does not fit its column.
func (r *Repository[T, ID]) Upsert(ctx context.Context, db DB, v *T, conflict ...string) error {
	ctx, c := r.tel.start(ctx, opUpsert, db)
	err := r.upsert(ctx, db, v, conflict)
	c.affectedOne(err)
	c.end(ctx, err)
	return err
}

func (r *Repository[T, ID]) upsert(ctx context.Context, db DB, v *T, conflict []string) error {
	if db == nil {
		return r.nilDB("upsert into")
	}
	if v == nil {
		return fmt.Errorf("%w: upsert into %s: nil value", ErrInvalid, r.t.name)
	}
	query, err := r.upsertSQL(conflict)
	if err != nil {
		return err
	}
	rv := reflect.ValueOf(v).Elem()
	args := values(make([]any, 0, len(r.insertCols)), rv, r.insertCols)
	if len(r.insertRet) == 0 {
		_, err = db.Exec(ctx, query, args...)
	} else {
		err = db.QueryRow(ctx, query, args...).Scan(ptrs(make([]any, 0, len(r.insertRet)), rv, r.insertRet)...)
	}
	if err != nil {
		return translateParams(r.what("upsert into", nil), err, r.insertParams)
	}
	return nil
}

// upsertSQL returns, building and caching it the first time, the upsert
// statement for the conflict columns.
func (r *Repository[T, ID]) upsertSQL(conflict []string) (string, error) {
	if len(conflict) == 0 {
		for _, c := range r.t.pk {
			if c.generated {
				return "", fmt.Errorf("%w: upsert into %s: the primary key column %q is generated: name the conflict columns", ErrInvalid, r.t.name, c.name)
			}
		}
		conflict = columnNames(r.t.pk)
	}
	// Names are checked before the cache is consulted, so that no name
	// reaches the cache key unchecked.
	target := make([]*column, 0, len(conflict))
	for _, name := range conflict {
		c, err := r.t.column(name)
		if err != nil {
			return "", err
		}
		if slices.Contains(target, c) {
			return "", fmt.Errorf("%w: upsert into %s: conflict column %q named twice", ErrInvalid, r.t.name, name)
		}
		target = append(target, c)
	}
	key := strings.Join(conflict, "\x00")
	if s, ok := r.upserts.Load(key); ok {
		return s.(string), nil
	}
	inTarget := map[*column]bool{}
	for _, c := range target {
		inTarget[c] = true
	}
	var set []string
	for _, c := range r.insertCols {
		if !inTarget[c] && !c.pk {
			set = append(set, c.quoted+" = EXCLUDED."+c.quoted)
		}
	}
	if d := r.t.deleted; d != nil {
		set = append(set, d.quoted+" = NULL")
	}
	if r.bump != "" {
		set = append(set, r.bump)
	}
	if len(set) == 0 {
		// DO NOTHING would return no row to fill v from: a no-op update does.
		set = append(set, target[0].quoted+" = EXCLUDED."+target[0].quoted)
	}
	s := r.insertSQL(" ON CONFLICT (" + quotedList(target, "") + ") DO UPDATE SET " + strings.Join(set, ", "))
	r.upserts.Store(key, s)
	return s, nil
}

// nilDB is the error of a method called with a nil DB: nothing ran.
func (r *Repository[T, ID]) nilDB(op string) error {
	return fmt.Errorf("%w: pgrepo: %s %s: nil DB", ErrInvalid, op, r.t.name)
}

// keyArgs returns the bind parameters of the key id: id itself for a
// one-column key, the ID struct's fields in key-column order for a
// composite one.
func (r *Repository[T, ID]) keyArgs(id ID) []any {
	if r.idFields == nil {
		return []any{id}
	}
	rv := reflect.ValueOf(&id).Elem()
	key := make([]any, len(r.idFields))
	for i, f := range r.idFields {
		key[i] = rv.Field(f).Interface()
	}
	return key
}

// what names an operation for error messages, with the key values when key
// is not nil; only called on error paths.
func (r *Repository[T, ID]) what(op string, key []any) string {
	var b strings.Builder
	b.WriteString("pgrepo: " + op + " " + r.t.name)
	for i, v := range key {
		fmt.Fprintf(&b, " %s=%v", r.t.pk[i].name, v)
	}
	return b.String()
}
