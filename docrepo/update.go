package docrepo

import (
	"fmt"
	"reflect"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Update is a typed set of update operators: $set, $unset, $inc, $push
// (with $each and $slice), $pull, $addToSet and $currentDate. Build it with
// NewUpdate and chained calls. Field names must be plain top-level names
// and values are checked literals, as in Filter; the first bad input is
// kept and returned (wrapping ErrInvalid) by the method that is given the
// Update. A nil slice in a value is encoded as an empty array, as the
// repository stores nil slice fields, so Set(field, nilSlice) leaves a field
// that Push accepts. An Update is not safe for concurrent modification.
type Update struct {
	set, unset, inc, push, pull, addToSet, currentDate bson.D
	fields                                             map[string]bool
	err                                                error
}

// NewUpdate returns an empty Update.
func NewUpdate() *Update { return &Update{} }

// Set sets field to value ($set).
func (u *Update) Set(field string, value any) *Update {
	return u.add(&u.set, field, value)
}

// Unset removes field from the document ($unset).
func (u *Update) Unset(field string) *Update {
	if !u.claim(field) {
		return u
	}
	u.unset = append(u.unset, bson.E{Key: field, Value: ""})
	return u
}

// Inc adds by, which must be a number, to field ($inc); a missing field
// counts as zero.
func (u *Update) Inc(field string, by any) *Update {
	if u.err != nil {
		return u
	}
	switch reflect.ValueOf(by).Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Float32, reflect.Float64:
	default:
		u.err = invalidf("Inc(%q): %T is not a number", field, by)
		return u
	}
	return u.add(&u.inc, field, by)
}

// Push appends values to the array field ($push with $each); a missing
// field becomes an array. A field that holds something else, BSON null
// included, gives ErrTypeMismatch.
func (u *Update) Push(field string, values ...any) *Update {
	return u.addEach(&u.push, field, values, nil)
}

// PushSlice appends values to the array field, then keeps only its first
// keep elements (keep > 0) or its last -keep elements (keep < 0): $push with
// $each and $slice, the capped list of "last N events". keep 0 would empty
// the array, values included, and gives ErrInvalid (use Set(field,
// []T{}) to empty it).
func (u *Update) PushSlice(field string, keep int, values ...any) *Update {
	if u.err == nil && keep == 0 {
		u.err = invalidf("PushSlice(%q): keep 0 would empty the array", field)
		return u
	}
	return u.addEach(&u.push, field, values, bson.E{Key: "$slice", Value: keep})
}

// Pull removes from the array field every element equal to value ($pull).
// A document value matches the elements that have its fields and values.
func (u *Update) Pull(field string, value any) *Update {
	return u.add(&u.pull, field, value)
}

// AddToSet appends each of values to the array field unless it is already
// there ($addToSet with $each); a missing field becomes an array. A field
// that holds something else, BSON null included, gives ErrTypeMismatch.
func (u *Update) AddToSet(field string, values ...any) *Update {
	return u.addEach(&u.addToSet, field, values, nil)
}

// CurrentDate sets field to the server's current time ($currentDate).
func (u *Update) CurrentDate(field string) *Update {
	if !u.claim(field) {
		return u
	}
	u.currentDate = append(u.currentDate, bson.E{Key: field, Value: true})
	return u
}

// BSON returns the update document that is sent to the server, or the error
// (wrapping ErrInvalid) that the update was built with. An Update with no
// operator gives ErrInvalid.
func (u *Update) BSON() (bson.D, error) {
	if u == nil {
		return nil, invalidf("nil update")
	}
	if u.err != nil {
		return nil, u.err
	}
	var d bson.D
	for _, op := range []struct {
		name string
		d    bson.D
	}{
		{"$set", u.set}, {"$unset", u.unset}, {"$inc", u.inc}, {"$push", u.push},
		{"$pull", u.pull}, {"$addToSet", u.addToSet}, {"$currentDate", u.currentDate},
	} {
		if len(op.d) > 0 {
			d = append(d, bson.E{Key: op.name, Value: op.d})
		}
	}
	if len(d) == 0 {
		return nil, invalidf("empty update")
	}
	return d, nil
}

// touches reports whether the update writes field.
func (u *Update) touches(field string) bool { return u.fields[field] }

// claim checks field and records it; two operators on one field would be
// rejected by the server, so they are rejected here with a clearer error.
func (u *Update) claim(field string) bool {
	if u.err != nil {
		return false
	}
	if err := checkField(field); err != nil {
		u.err = err
		return false
	}
	if field == "_id" {
		u.err = invalidf("_id cannot be updated")
		return false
	}
	if u.fields[field] {
		u.err = invalidf("field %q is updated twice", field)
		return false
	}
	if u.fields == nil {
		u.fields = make(map[string]bool)
	}
	u.fields[field] = true
	return true
}

func (u *Update) add(op *bson.D, field string, value any) *Update {
	if !u.claim(field) {
		return u
	}
	v, err := literal(value)
	if err != nil {
		u.err = fmt.Errorf("field %q: %w", field, err)
		return u
	}
	*op = append(*op, bson.E{Key: field, Value: v})
	return u
}

func (u *Update) addEach(op *bson.D, field string, values []any, extra any) *Update {
	if !u.claim(field) {
		return u
	}
	arr := make(bson.A, len(values))
	for i, value := range values {
		v, err := literal(value)
		if err != nil {
			u.err = fmt.Errorf("field %q, value %d: %w", field, i, err)
			return u
		}
		arr[i] = v
	}
	spec := bson.D{{Key: "$each", Value: arr}}
	if e, ok := extra.(bson.E); ok {
		spec = append(spec, e)
	}
	*op = append(*op, bson.E{Key: field, Value: spec})
	return u
}

// typedFields returns the fields that u applies an array operator to, or
// a number operator: those that a type mismatch of that kind can come from.
func (u *Update) typedFields(number bool) []string {
	ops := []bson.D{u.push, u.addToSet, u.pull}
	if number {
		ops = []bson.D{u.inc}
	}
	var out []string
	for _, d := range ops {
		for _, e := range d {
			out = append(out, e.Key)
		}
	}
	return out
}

// updateError translates the error of a write of u; a type mismatch whose
// field the server does not name ($pull) is narrowed to u's fields.
func updateError(op string, u *Update, err error, effect string) error {
	if isTypeMismatch(err) {
		return typeMismatch(op, err, u.typedFields, effect)
	}
	return translate(op, err)
}
