package docrepo

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// mapping locates the fields of a document type that the repository reads
// and writes. It is computed once, in New.
type mapping struct {
	id      []int
	version field // index nil: the type has no version field
	created field
	updated field
	// slices are the top-level slice fields that the driver would encode
	// as BSON null when nil; see emptyNilSlices.
	slices [][]int
}

type field struct {
	index []int
	name  string // BSON key
}

var timeType = reflect.TypeFor[time.Time]()

// newMapping reads T's struct tags: the field whose bson key is "_id" (of
// type ID), and the fields tagged `docrepo:"version"` (an integer),
// `docrepo:"created"` and `docrepo:"updated"` (time.Time).
func newMapping[T any, ID comparable]() (mapping, error) {
	var m mapping
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return m, invalidf("document type %v is not a struct", t)
	}
	idType := reflect.TypeFor[ID]()
	for i := range t.NumField() {
		sf := t.Field(i)
		name, ok := bsonKey(sf)
		role := sf.Tag.Get("docrepo")
		if !ok {
			if role != "" {
				return m, invalidf("%v.%s has a docrepo tag but is not encoded", t, sf.Name)
			}
			continue
		}
		if name == "_id" {
			if sf.Type != idType {
				return m, invalidf("%v.%s (_id) is a %v, not the repository's id type %v", t, sf.Name, sf.Type, idType)
			}
			m.id = sf.Index
		}
		f := field{index: sf.Index, name: name}
		switch role {
		case "":
		case "version":
			switch sf.Type.Kind() {
			case reflect.Int, reflect.Int32, reflect.Int64:
			default:
				return m, invalidf("%v.%s (version) is a %v, not an int, int32 or int64", t, sf.Name, sf.Type)
			}
			if m.version.index != nil {
				return m, invalidf("%v has two version fields", t)
			}
			m.version = f
		case "created", "updated":
			if sf.Type != timeType {
				return m, invalidf("%v.%s (%s) is a %v, not a time.Time", t, sf.Name, role, sf.Type)
			}
			dst := &m.created
			if role == "updated" {
				dst = &m.updated
			}
			if dst.index != nil {
				return m, invalidf("%v has two %s fields", t, role)
			}
			*dst = f
		default:
			return m, invalidf("%v.%s: unknown docrepo tag %q (want version, created or updated)", t, sf.Name, role)
		}
		if role != "" && name == "_id" {
			return m, invalidf("%v.%s: _id cannot also be the %s field", t, sf.Name, role)
		}
	}
	if m.id == nil {
		return m, invalidf("document type %v has no field encoded as _id (add `bson:\"_id\"`)", t)
	}
	m.slices = nilSliceFields(t, nil)
	return m, nil
}

var (
	byteSliceType      = reflect.TypeFor[[]byte]()
	marshalerType      = reflect.TypeFor[bson.Marshaler]()
	valueMarshalerType = reflect.TypeFor[bson.ValueMarshaler]()
)

// nilSliceFields returns the index paths of t's fields, and of the fields of
// the structs it inlines, that the driver's struct codec encodes as a BSON
// array, and as null when nil: slices without omitempty (which leaves a
// nil slice out), other than []byte (binary) and types that marshal
// themselves.
func nilSliceFields(t reflect.Type, parent []int) [][]int {
	var out [][]int
	for i := range t.NumField() {
		sf := t.Field(i)
		index := append(slices.Clip(parent), sf.Index...)
		tag := sf.Tag.Get("bson")
		_, opts, _ := strings.Cut(tag, ",")
		opts = "," + opts + ","
		switch {
		case !sf.IsExported() || tag == "-":
		case strings.Contains(opts, ",inline,"):
			if sf.Type.Kind() == reflect.Struct {
				out = append(out, nilSliceFields(sf.Type, index)...)
			}
		case sf.Type.Kind() != reflect.Slice, strings.Contains(opts, ",omitempty,"),
			sf.Type.ConvertibleTo(byteSliceType),
			sf.Type.Implements(marshalerType), reflect.PointerTo(sf.Type).Implements(marshalerType),
			sf.Type.Implements(valueMarshalerType), reflect.PointerTo(sf.Type).Implements(valueMarshalerType):
		default:
			out = append(out, index)
		}
	}
	return out
}

// emptyNilSlices sets each nil slice field that the driver would store as
// BSON null to an empty slice, stored as an empty array, so that Push,
// PushSlice and AddToSet work on every document that the repository wrote
// (the server refuses them on null), and the value in hand equals what Get
// returns. Nested documents are left to the client's BSON options: the
// builders cannot address their fields.
func (m mapping) emptyNilSlices(v reflect.Value) {
	for _, index := range m.slices {
		if f := v.FieldByIndex(index); f.IsNil() {
			f.Set(reflect.MakeSlice(f.Type(), 0, 0))
		}
	}
}

// bsonKey returns the key under which the driver's default struct codec
// encodes sf, and false for a field it skips or inlines.
func bsonKey(sf reflect.StructField) (string, bool) {
	if !sf.IsExported() {
		return "", false
	}
	tag, hasTag := sf.Tag.Lookup("bson")
	if tag == "-" {
		return "", false
	}
	name, opts, _ := strings.Cut(tag, ",")
	if strings.Contains(","+opts+",", ",inline,") {
		return "", false
	}
	if !hasTag || name == "" {
		name = strings.ToLower(sf.Name)
	}
	return name, true
}

var objectIDType = reflect.TypeFor[bson.ObjectID]()

// prepareInsert fills the generated fields of a new document: an ObjectID
// when the id is zero, version 1 when it is zero, and the timestamps; and
// it empties nil slices (see emptyNilSlices). It checks before it changes
// anything, so that an error leaves v as it was.
func (m mapping) prepareInsert(v reflect.Value, now time.Time) error {
	if m.version.index != nil {
		if n := v.FieldByIndex(m.version.index).Int(); n < 0 {
			return invalidf("negative version %d (zero starts at 1)", n)
		}
	}
	id := v.FieldByIndex(m.id)
	if id.IsZero() {
		if id.Type() != objectIDType {
			return fmt.Errorf("%w: zero %v id: only ObjectID ids are generated", ErrInvalidID, id.Type())
		}
		id.Set(reflect.ValueOf(bson.NewObjectID()))
	}
	m.emptyNilSlices(v)
	if m.version.index != nil {
		if f := v.FieldByIndex(m.version.index); f.Int() == 0 {
			f.SetInt(1)
		}
	}
	if m.created.index != nil {
		if f := v.FieldByIndex(m.created.index); f.Interface().(time.Time).IsZero() {
			f.Set(reflect.ValueOf(now))
		}
	}
	if m.updated.index != nil {
		v.FieldByIndex(m.updated.index).Set(reflect.ValueOf(now))
	}
	return nil
}
