package docrepo

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// SortField orders results by one field. Build it with Asc or Desc.
type SortField struct {
	// Field is a plain top-level field name.
	Field string
	// Desc orders largest first. Default: false, smallest first.
	Desc bool
}

// Asc orders by field, smallest first.
func Asc(field string) SortField { return SortField{Field: field} }

// Desc orders by field, largest first.
func Desc(field string) SortField { return SortField{Field: field, Desc: true} }

// Query describes what Find and FindOne return. The zero Query returns
// every document in the server's natural order.
type Query struct {
	// Filter selects the documents. Default: all.
	Filter Filter
	// Sort orders them, first field first. Default: natural order.
	Sort []SortField
	// Skip drops this many documents first. Default: 0. Negative:
	// ErrInvalid.
	Skip int64
	// Limit returns at most this many documents. Default: 0, no limit.
	// Negative: ErrInvalid (the server would read -n as "n, in one
	// batch").
	Limit int64
	// Fields, when not empty, is the projection: only these fields (and
	// _id) are returned; the others keep their zero value in T.
	// Default: every field.
	Fields []string
}

func sortDoc(fields []SortField) (bson.D, error) {
	d := make(bson.D, 0, len(fields))
	for _, f := range fields {
		if err := checkField(f.Field); err != nil {
			return nil, err
		}
		dir := 1
		if f.Desc {
			dir = -1
		}
		d = append(d, bson.E{Key: f.Field, Value: dir})
	}
	return d, nil
}

func projectionDoc(fields []string) (bson.D, error) {
	d := make(bson.D, 0, len(fields))
	for _, f := range fields {
		if err := checkField(f); err != nil {
			return nil, err
		}
		d = append(d, bson.E{Key: f, Value: 1})
	}
	return d, nil
}

// findOptions turns q into the filter and options of a find command.
func (q Query) findOptions() (bson.D, *options.FindOptionsBuilder, error) {
	filter, err := q.Filter.BSON()
	if err != nil {
		return nil, nil, err
	}
	if q.Skip < 0 {
		return nil, nil, invalidf("negative skip %d", q.Skip)
	}
	if q.Limit < 0 {
		return nil, nil, invalidf("negative limit %d", q.Limit)
	}
	opts := options.Find()
	if len(q.Sort) > 0 {
		s, err := sortDoc(q.Sort)
		if err != nil {
			return nil, nil, err
		}
		opts.SetSort(s)
	}
	if len(q.Fields) > 0 {
		p, err := projectionDoc(q.Fields)
		if err != nil {
			return nil, nil, err
		}
		opts.SetProjection(p)
	}
	if q.Skip > 0 {
		opts.SetSkip(q.Skip)
	}
	if q.Limit > 0 {
		opts.SetLimit(q.Limit)
	}
	return filter, opts, nil
}
