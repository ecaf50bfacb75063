package docrepo

import (
	"fmt"
	"reflect"
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
	return m, nil
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
// when the id is zero, version 1 when it is zero, and the timestamps.
func (m mapping) prepareInsert(v reflect.Value, now time.Time) error {
	id := v.FieldByIndex(m.id)
	if id.IsZero() {
		if id.Type() != objectIDType {
			return fmt.Errorf("%w: zero %v id: only ObjectID ids are generated", ErrInvalidID, id.Type())
		}
		id.Set(reflect.ValueOf(bson.NewObjectID()))
	}
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
