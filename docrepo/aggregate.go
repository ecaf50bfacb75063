package docrepo

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Pipeline is an aggregation pipeline built from checked stages: $match
// (from a Filter), $sort, $skip, $limit, $project, $unwind, $group and
// $count. Field names follow Filter's rules, so no stage can be made to
// reference or run something other than what its method says. The first
// bad input is kept and returned (wrapping ErrInvalid) by Aggregate.
type Pipeline struct {
	stages mongo.Pipeline
	err    error
}

// NewPipeline returns an empty pipeline.
func NewPipeline() *Pipeline { return &Pipeline{} }

// Match keeps the documents that f matches ($match).
func (p *Pipeline) Match(f Filter) *Pipeline {
	d, err := f.BSON()
	return p.add(err, bson.D{{Key: "$match", Value: d}})
}

// Sort orders the documents ($sort).
func (p *Pipeline) Sort(fields ...SortField) *Pipeline {
	d, err := sortDoc(fields)
	if err == nil && len(d) == 0 {
		err = invalidf("Sort of no fields")
	}
	return p.add(err, bson.D{{Key: "$sort", Value: d}})
}

// Skip drops the first n documents ($skip).
func (p *Pipeline) Skip(n int64) *Pipeline {
	var err error
	if n < 0 {
		err = invalidf("negative skip %d", n)
	}
	return p.add(err, bson.D{{Key: "$skip", Value: n}})
}

// Limit keeps the first n documents ($limit); n must be positive.
func (p *Pipeline) Limit(n int64) *Pipeline {
	var err error
	if n <= 0 {
		err = invalidf("limit %d is not positive", n)
	}
	return p.add(err, bson.D{{Key: "$limit", Value: n}})
}

// Project keeps only the given fields, and _id ($project).
func (p *Pipeline) Project(fields ...string) *Pipeline {
	d, err := projectionDoc(fields)
	if err == nil && len(d) == 0 {
		err = invalidf("Project of no fields")
	}
	return p.add(err, bson.D{{Key: "$project", Value: d}})
}

// Unwind outputs one document per element of the array field ($unwind).
func (p *Pipeline) Unwind(field string) *Pipeline {
	return p.add(checkField(field), bson.D{{Key: "$unwind", Value: "$" + field}})
}

// Group groups the documents by the value of field (all of them together
// when field is "") into documents with that value as _id and one field per
// accumulator ($group).
func (p *Pipeline) Group(field string, accs ...Accumulator) *Pipeline {
	var key any // nil: one group of every document
	var err error
	if field != "" {
		err = checkField(field)
		key = "$" + field
	}
	d := bson.D{{Key: "_id", Value: key}}
	for _, a := range accs {
		if err != nil {
			break
		}
		if err = checkField(a.name); err != nil {
			break
		}
		if a.name == "_id" {
			err = invalidf("an accumulator cannot be named _id")
			break
		}
		var arg any = 1 // Sum of "" counts documents.
		if a.field == "" && a.op != "$sum" {
			err = invalidf("accumulator %s of %q needs a field", a.op, a.name)
			break
		}
		if a.field != "" {
			if err = checkField(a.field); err != nil {
				break
			}
			arg = "$" + a.field
		}
		d = append(d, bson.E{Key: a.name, Value: bson.D{{Key: a.op, Value: arg}}})
	}
	return p.add(err, bson.D{{Key: "$group", Value: d}})
}

// Count outputs one document whose field holds the number of documents
// ($count).
func (p *Pipeline) Count(field string) *Pipeline {
	return p.add(checkField(field), bson.D{{Key: "$count", Value: field}})
}

// BSON returns the stages sent to the server, or the first error (wrapping
// ErrInvalid) the pipeline was built with.
func (p *Pipeline) BSON() (mongo.Pipeline, error) {
	if p == nil {
		return nil, invalidf("nil pipeline")
	}
	if p.err != nil {
		return nil, p.err
	}
	if p.stages == nil {
		return mongo.Pipeline{}, nil
	}
	return p.stages, nil
}

func (p *Pipeline) add(err error, stage bson.D) *Pipeline {
	if p.err != nil {
		return p
	}
	if err != nil {
		p.err = fmt.Errorf("pipeline stage %d: %w", len(p.stages), err)
		return p
	}
	p.stages = append(p.stages, stage)
	return p
}

// Accumulator computes one field of a Group output document.
type Accumulator struct {
	name, op, field string
}

// Sum outputs as name the sum of field over the group, or the number of
// documents in the group when field is "" ($sum).
func Sum(name, field string) Accumulator { return Accumulator{name, "$sum", field} }

// Avg outputs as name the average of field over the group ($avg).
func Avg(name, field string) Accumulator { return Accumulator{name, "$avg", field} }

// Min outputs as name the smallest value of field in the group ($min).
func Min(name, field string) Accumulator { return Accumulator{name, "$min", field} }

// Max outputs as name the largest value of field in the group ($max).
func Max(name, field string) Accumulator { return Accumulator{name, "$max", field} }

// Push outputs as name the array of the values of field in the group
// ($push).
func Push(name, field string) Accumulator { return Accumulator{name, "$push", field} }

// Aggregate runs p on r's collection and decodes every output document
// into an R, with the driver's codecs. Errors: ErrInvalid (a nil r or a bad pipeline),
// ErrUnsupported (a stage or accumulator the server lacks; FerretDB 1.24
// has no $avg, $min, $max or $push in $group).
func Aggregate[R, T any, ID comparable](ctx context.Context, r *Repository[T, ID], p *Pipeline) ([]R, error) {
	if r == nil {
		return nil, invalidf("aggregate: nil repository")
	}
	ctx, c := r.tel.start(ctx, opAggregate)
	out, err := aggregate[R](ctx, r, p)
	if err == nil {
		c.returned(len(out))
	}
	c.end(ctx, err)
	return out, err
}

func aggregate[R, T any, ID comparable](ctx context.Context, r *Repository[T, ID], p *Pipeline) ([]R, error) {
	stages, err := p.BSON()
	if err != nil {
		return nil, err
	}
	cur, err := r.coll.Aggregate(ctx, stages)
	if err != nil {
		return nil, translate("aggregate", err)
	}
	out := []R{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, translate("aggregate", err)
	}
	return out, nil
}
