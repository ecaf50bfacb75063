package pgrepo

import (
	"database/sql"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"
)

// column is one struct field mapped to one table column.
type column struct {
	name   string // as in the tag, unquoted
	quoted string // pgx.Identifier{name}.Sanitize(), the only form that reaches SQL
	field  string // Go field name, for messages
	index  []int  // reflect field index path from the struct
	typ    reflect.Type

	pk, generated, readonly, version, softDelete bool
}

// writable reports whether Insert writes the column from the struct.
func (c *column) writable() bool {
	return !c.generated && !c.readonly && !c.version && !c.softDelete
}

// table is the description of a struct type as a table, computed once by New.
type table struct {
	name    string // as given to New, for messages
	quoted  string
	ident   pgx.Identifier
	cols    []*column
	byName  map[string]*column
	pk      []*column // the primary key's columns, in field order
	version *column   // nil without optimistic locking
	deleted *column   // nil without soft delete
}

var scannerType = reflect.TypeFor[sql.Scanner]()

// describe builds the table description of struct type typ from its db tags.
func describe(name string, typ reflect.Type) (*table, error) {
	if typ.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: pgrepo.New: %s is not a struct type", ErrInvalid, typ)
	}
	ident := pgx.Identifier(strings.Split(name, "."))
	for _, part := range ident {
		if part == "" {
			return nil, fmt.Errorf("%w: pgrepo.New: bad table name %q", ErrInvalid, name)
		}
	}
	t := &table{name: name, ident: ident, quoted: ident.Sanitize(), byName: map[string]*column{}}
	if err := t.addFields(typ, nil); err != nil {
		return nil, fmt.Errorf("%w: pgrepo.New[%s](%q): %v", ErrInvalid, typ, name, err)
	}
	if len(t.cols) == 0 {
		return nil, fmt.Errorf("%w: pgrepo.New[%s](%q): no columns", ErrInvalid, typ, name)
	}
	if len(t.pk) == 0 {
		return nil, fmt.Errorf("%w: pgrepo.New[%s](%q): no primary key: tag a field `db:\"name,pk\"` (several for a composite key)", ErrInvalid, typ, name)
	}
	return t, nil
}

func (t *table) addFields(typ reflect.Type, parent []int) error {
	for i := range typ.NumField() {
		sf := typ.Field(i)
		tag, tagged := sf.Tag.Lookup("db")
		if tag == "-" {
			continue
		}
		index := append(append([]int(nil), parent...), i)
		if sf.Anonymous && !tagged {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
				return fmt.Errorf("embedded pointer %s is not supported: embed the struct by value", sf.Name)
			}
			if ft.Kind() == reflect.Struct {
				if err := t.addFields(ft, index); err != nil {
					return err
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if err := t.addColumn(sf, tag, index); err != nil {
			return err
		}
	}
	return nil
}

func (t *table) addColumn(sf reflect.StructField, tag string, index []int) error {
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = snakeCase(sf.Name)
	}
	c := &column{name: name, quoted: pgx.Identifier{name}.Sanitize(), field: sf.Name, index: index, typ: sf.Type}
	if opts != "" {
		for opt := range strings.SplitSeq(opts, ",") {
			switch opt {
			case "pk":
				c.pk = true
			case "generated":
				c.generated = true
			case "readonly":
				c.readonly = true
			case "version":
				c.version = true
			case "softdelete":
				c.softDelete = true
			default:
				return fmt.Errorf("field %s: unknown tag option %q (want pk, generated, readonly, version or softdelete)", sf.Name, opt)
			}
		}
	}
	if prev, ok := t.byName[name]; ok {
		return fmt.Errorf("duplicate column %q (fields %s and %s)", name, prev.field, sf.Name)
	}
	switch {
	case c.pk && (c.readonly || c.version || c.softDelete):
		return fmt.Errorf("column %q: pk cannot be readonly, version or softdelete", name)
	case c.version && t.version != nil:
		return fmt.Errorf("more than one version column (%s, %s)", t.version.name, name)
	case c.version && (c.generated || c.readonly || c.softDelete):
		return fmt.Errorf("column %q: version cannot be generated, readonly or softdelete", name)
	case c.version && !isInteger(c.typ):
		return fmt.Errorf("version column %q: type %s is not an integer", name, c.typ)
	case c.softDelete && t.deleted != nil:
		return fmt.Errorf("more than one softdelete column (%s, %s)", t.deleted.name, name)
	case c.softDelete && (c.generated || c.readonly):
		return fmt.Errorf("column %q: softdelete cannot be generated or readonly", name)
	case c.softDelete && c.typ.Kind() != reflect.Pointer && !reflect.PointerTo(c.typ).Implements(scannerType):
		// Visible rows have NULL there, so the field must be able to hold NULL.
		return fmt.Errorf("softdelete column %q: type %s cannot hold NULL (use *time.Time)", name, c.typ)
	}
	if c.pk {
		t.pk = append(t.pk, c)
	}
	if c.version {
		t.version = c
	}
	if c.softDelete {
		t.deleted = c
	}
	t.byName[name] = c
	t.cols = append(t.cols, c)
	return nil
}

// keyTypeFits reports whether values of Go type id can stand for a key
// column whose field has type key: the same type, one assignable to it, or
// one of the same kind family convertible both ways (type UserID int64 for
// an int64 key, int for int64). Go's other conversions (int to string, a
// []byte to a string) change what the value means to PostgreSQL, so they do
// not count.
func keyTypeFits(id, key reflect.Type) bool {
	if id.AssignableTo(key) {
		return true
	}
	return id.ConvertibleTo(key) && key.ConvertibleTo(id) && kindFamily(id) == kindFamily(key)
}

// kindFamily groups the kinds whose values PostgreSQL reads the same way.
func kindFamily(typ reflect.Type) reflect.Kind {
	switch {
	case isInteger(typ):
		return reflect.Int
	case typ.Kind() == reflect.Float32:
		return reflect.Float64
	}
	return typ.Kind()
}

func isInteger(typ reflect.Type) bool {
	switch typ.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// snakeCase turns a Go field name into the usual column name: UserID becomes
// user_id, CreatedAt created_at.
func snakeCase(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			// A new word starts at an upper-case letter that follows a lower-case
			// one, or that ends an acronym (the D of "IDName" before "Name").
			if i > 0 && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1]))) {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// column returns the column called name, or an ErrInvalidColumn naming it.
func (t *table) column(name string) (*column, error) {
	c, ok := t.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: table %s has no column %q", ErrInvalidColumn, t.name, name)
	}
	return c, nil
}

// ptrs appends to dst pointers to the fields of the addressable struct value
// rv that hold cols, ready for Scan.
func ptrs(dst []any, rv reflect.Value, cols []*column) []any {
	for _, c := range cols {
		dst = append(dst, rv.FieldByIndex(c.index).Addr().Interface())
	}
	return dst
}

// values appends to dst the values of the fields of rv that hold cols.
func values(dst []any, rv reflect.Value, cols []*column) []any {
	for _, c := range cols {
		dst = append(dst, rv.FieldByIndex(c.index).Interface())
	}
	return dst
}

// quotedList joins the quoted names of cols with commas, prefixing each
// with prefix (such as "EXCLUDED.").
func quotedList(cols []*column, prefix string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = prefix + c.quoted
	}
	return strings.Join(parts, ", ")
}

// columnNames returns the unquoted names of cols.
func columnNames(cols []*column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.name
	}
	return out
}

// keyFields maps the fields of a composite key's ID struct type to the key
// columns of t: the result holds, for each column of t.pk in order, the
// index of the field of id that holds it. Fields tagged with a column name
// map by that name (every field must then be tagged); untagged fields map
// by position, in the order of the pk fields of the row struct, and a field
// whose snake_case name is another key column's is rejected, so that a
// reordered struct cannot swap two keys of one type unnoticed. Each field's
// type must fit its column's as keyTypeFits says.
func (t *table) keyFields(id reflect.Type) ([]int, error) {
	if id.Kind() != reflect.Struct {
		return nil, fmt.Errorf("the primary key (%s) is composite: ID must be a struct with one field per key column, not %s",
			strings.Join(columnNames(t.pk), ", "), id)
	}
	type field struct {
		index int
		sf    reflect.StructField
		name  string // the tag's column name, "" when untagged
	}
	var fields []field
	tagged := 0
	for i := range id.NumField() {
		sf := id.Field(i)
		tag := sf.Tag.Get("db")
		if !sf.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name != "" {
			tagged++
		}
		fields = append(fields, field{i, sf, name})
	}
	if len(fields) != len(t.pk) {
		return nil, fmt.Errorf("ID type %s has %d exported fields for the %d key columns (%s)",
			id, len(fields), len(t.pk), strings.Join(columnNames(t.pk), ", "))
	}
	if tagged != 0 && tagged != len(fields) {
		return nil, fmt.Errorf("ID type %s: tag every field with its key column, or none (to map them by position)", id)
	}
	out := make([]int, len(t.pk))
	for pos, c := range t.pk {
		f := fields[pos]
		if tagged > 0 {
			found := false
			for _, g := range fields {
				if g.name == c.name {
					f, found = g, true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("ID type %s has no field tagged `db:%q` for key column %q", id, c.name, c.name)
			}
		} else if other, ok := t.byName[snakeCase(f.sf.Name)]; ok && other.pk && other != c {
			return nil, fmt.Errorf("ID type %s: field %s is at the position of key column %q but its name says %q: order the fields as the key or tag them",
				id, f.sf.Name, c.name, other.name)
		}
		if !keyTypeFits(f.sf.Type, c.typ) {
			return nil, fmt.Errorf("ID type %s: field %s of type %s does not fit key column %q of type %s (field %s)",
				id, f.sf.Name, f.sf.Type, c.name, c.typ, c.field)
		}
		out[pos] = f.index
	}
	return out, nil
}

// keyWhere returns "k1 = $n AND k2 = $n+1 ..." for the key columns, the
// first parameter being $n.
func (t *table) keyWhere(n int) string {
	parts := make([]string, len(t.pk))
	for i, c := range t.pk {
		parts[i] = c.quoted + " = $" + strconv.Itoa(n+i)
	}
	return strings.Join(parts, " AND ")
}
