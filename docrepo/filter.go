package docrepo

import (
	"bytes"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Filter selects documents. Build it with Eq, Ne, Gt, Gte, Lt, Lte, In, Nin,
// Exists, And and Or; the zero Filter matches every document. Field names
// must be plain top-level names and values are sent as literals (see
// checkField and literal), so a Filter built from client input cannot carry
// an operator, a regular expression or JavaScript. A Filter that was built
// from bad input holds an error wrapping ErrInvalid, which every method that
// takes it returns before contacting the server.
type Filter struct {
	d   bson.D
	err error
	all bool
}

// All returns a Filter that matches every document. It is the zero Filter
// made explicit: DeleteMany refuses the zero Filter, to keep a forgotten
// filter from emptying a collection, and accepts All.
func All() Filter { return Filter{all: true} }

// Eq matches documents whose field equals value (or, for an array field,
// holds it). It is written {field: value}, the form the server plans best;
// that form is a plain comparison because literal refuses the two values
// that would make it anything else: a regular expression and a document
// with '$' keys.
func Eq(field string, value any) Filter {
	if err := checkField(field); err != nil {
		return Filter{err: err}
	}
	v, err := literal(value)
	if err != nil {
		return Filter{err: fmt.Errorf("field %q: %w", field, err)}
	}
	return Filter{d: bson.D{{Key: field, Value: v}}}
}

// Ne matches documents whose field does not equal value (or is missing).
func Ne(field string, value any) Filter { return cond(field, "$ne", value) }

// Gt matches documents whose field is greater than value.
func Gt(field string, value any) Filter { return cond(field, "$gt", value) }

// Gte matches documents whose field is greater than or equal to value.
func Gte(field string, value any) Filter { return cond(field, "$gte", value) }

// Lt matches documents whose field is less than value.
func Lt(field string, value any) Filter { return cond(field, "$lt", value) }

// Lte matches documents whose field is less than or equal to value.
func Lte(field string, value any) Filter { return cond(field, "$lte", value) }

// In matches documents whose field equals one of values. In with no values
// matches nothing.
func In(field string, values ...any) Filter { return condList(field, "$in", values) }

// Nin matches documents whose field equals none of values.
func Nin(field string, values ...any) Filter { return condList(field, "$nin", values) }

// Exists matches documents that have the field (exists true) or lack it.
func Exists(field string, exists bool) Filter {
	if err := checkField(field); err != nil {
		return Filter{err: err}
	}
	return Filter{d: bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: exists}}}}}
}

// And matches documents that every filter matches. And of no filters
// matches every document.
func And(filters ...Filter) Filter { return combine("$and", filters) }

// Or matches documents that at least one filter matches. Or of no filters
// is invalid (ErrInvalid), as the server has no empty $or.
func Or(filters ...Filter) Filter {
	if len(filters) == 0 {
		return Filter{err: invalidf("Or of no filters")}
	}
	return combine("$or", filters)
}

// BSON returns the filter document that is sent to the server, or the error
// (wrapping ErrInvalid) that the filter was built with. It lets a caller
// inspect a filter or pass it to the driver directly.
func (f Filter) BSON() (bson.D, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.d == nil {
		return bson.D{}, nil
	}
	return f.d, nil
}

// IsZero reports whether f is the zero Filter, which matches everything
// but is not All.
func (f Filter) IsZero() bool { return f.d == nil && f.err == nil && !f.all }

func cond(field, op string, value any) Filter {
	if err := checkField(field); err != nil {
		return Filter{err: err}
	}
	v, err := literal(value)
	if err != nil {
		return Filter{err: fmt.Errorf("field %q: %w", field, err)}
	}
	return Filter{d: bson.D{{Key: field, Value: bson.D{{Key: op, Value: v}}}}}
}

func condList(field, op string, values []any) Filter {
	if err := checkField(field); err != nil {
		return Filter{err: err}
	}
	arr := make(bson.A, len(values))
	for i, value := range values {
		v, err := literal(value)
		if err != nil {
			return Filter{err: fmt.Errorf("field %q, value %d: %w", field, i, err)}
		}
		arr[i] = v
	}
	return Filter{d: bson.D{{Key: field, Value: bson.D{{Key: op, Value: arr}}}}}
}

func combine(op string, filters []Filter) Filter {
	if len(filters) == 0 {
		return Filter{}
	}
	arr := make(bson.A, 0, len(filters))
	for _, f := range filters {
		d, err := f.BSON()
		if err != nil {
			return Filter{err: err}
		}
		arr = append(arr, d)
	}
	return Filter{d: bson.D{{Key: op, Value: arr}}}
}

// checkField accepts a plain top-level field name: not empty, no NUL, not
// starting with '$' (an operator) and without '.' (a path into a nested
// document, which client input must not be able to reach).
func checkField(name string) error {
	switch {
	case name == "":
		return invalidf("empty field name")
	case strings.ContainsRune(name, 0):
		return invalidf("field name %q contains NUL", name)
	case strings.HasPrefix(name, "$"):
		return invalidf("field name %q starts with '$'", name)
	case strings.Contains(name, "."):
		return invalidf("field name %q contains '.'", name)
	}
	return nil
}

// literal encodes value with the driver's codecs and checks the produced
// BSON: no key at any depth may start with '$' (it would read as an
// operator inside $pull, $in and the like), and no regular expression or
// JavaScript may appear (either would be evaluated rather than compared).
// The encoded bytes are what is sent, so nothing can change after the
// check.
func literal(value any) (bson.RawValue, error) {
	if value == nil {
		return bson.RawValue{Type: bson.TypeNull}, nil
	}
	v, err := encodeValue(value)
	if err != nil {
		return bson.RawValue{}, fmt.Errorf("%w: encoding %T: %w", ErrInvalid, value, err)
	}
	if err := checkLiteral(v.Type, v.Value); err != nil {
		return bson.RawValue{}, err
	}
	return v, nil
}

// encodeValue encodes value as the driver's default codecs do, except that
// a nil slice, at any depth, becomes an empty array rather than null: the
// repository stores nil slices that way (see emptyNilSlices), so a value
// written with Set can take a Push and one given to Eq finds what Insert
// stored.
func encodeValue(value any) (bson.RawValue, error) {
	var buf bytes.Buffer
	enc := bson.NewEncoder(bson.NewDocumentWriter(&buf))
	enc.NilSliceAsEmpty()
	if err := enc.Encode(bson.D{{Key: "v", Value: value}}); err != nil {
		return bson.RawValue{}, err
	}
	return bson.Raw(buf.Bytes()).LookupErr("v")
}

func checkLiteral(t bson.Type, data []byte) error {
	switch t {
	case bson.TypeRegex:
		return invalidf("a regular expression is not accepted as a value")
	case bson.TypeJavaScript, bson.TypeCodeWithScope:
		return invalidf("JavaScript is not accepted as a value")
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		elems, err := bson.Raw(data).Elements()
		if err != nil {
			return fmt.Errorf("%w: malformed document: %w", ErrInvalid, err)
		}
		for _, e := range elems {
			key := e.Key()
			if t == bson.TypeEmbeddedDocument && strings.HasPrefix(key, "$") {
				return invalidf("key %q in a value starts with '$'", key)
			}
			v := e.Value()
			if err := checkLiteral(v.Type, v.Value); err != nil {
				return err
			}
		}
	}
	return nil
}
