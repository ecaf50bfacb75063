package docrepo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Repository stores documents of type T, whose _id is of type ID, in one
// collection. T is a struct encoded by the driver's codecs; its fields are
// located once, in New, from their struct tags:
//
//   - the field encoded as _id (`bson:"_id"`), of type ID: bson.ObjectID,
//     which Insert generates when zero, or a string or any other comparable
//     key, which the caller sets;
//   - optionally `docrepo:"version"` on an int, int32 or int64 field: Insert
//     starts it at 1, Replace succeeds only if the stored version still equals
//     the value's and increments it, Update increments it;
//   - optionally `docrepo:"created"` and `docrepo:"updated"` on time.Time
//     fields, maintained by Insert, Replace, Update and Upsert.
//
// Insert, InsertMany and Replace store a nil slice field of T (without
// omitempty, other than []byte) as an empty array, not as the driver's
// default BSON null, and set it to an empty slice in the value given, so
// that Push, PushSlice and AddToSet work on every document they wrote and
// the value equals what Get returns. Fields of nested documents follow the
// client's BSON options (options.BSONOptions.NilSliceAsEmpty).
//
// A Repository is safe for concurrent use.
type Repository[T any, ID comparable] struct {
	coll *mongo.Collection
	m    mapping
	opts Options
	tel  *telemetry
}

// New returns a repository of the documents of type T in coll. It returns
// an error wrapping ErrInvalid when T is not a struct, has no field encoded
// as _id of type ID, or has a docrepo tag on a field of the wrong type, and
// when opts holds a value that cannot be meant (see Options).
func New[T any, ID comparable](coll *mongo.Collection, opts Options) (*Repository[T, ID], error) {
	if coll == nil {
		return nil, invalidf("nil collection")
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	m, err := newMapping[T, ID]()
	if err != nil {
		return nil, err
	}
	return &Repository[T, ID]{coll: coll, m: m, opts: opts, tel: newTelemetry(coll, opts)}, nil
}

// Collection returns the underlying collection, for what the repository
// does not cover.
func (r *Repository[T, ID]) Collection() *mongo.Collection { return r.coll }

// Insert inserts doc. When its id is a zero bson.ObjectID, Insert generates
// one and sets it in doc; it also sets the version to 1 when zero, the
// created time when zero and the updated time, and makes nil slice fields
// empty (see Repository). On error doc is left as it was. Errors:
// ErrDuplicate (the id or a unique index is taken), ErrInvalidID (a zero id
// of a type other than ObjectID), ErrInvalid (nil doc, negative version).
func (r *Repository[T, ID]) Insert(ctx context.Context, doc *T) error {
	ctx, c := r.tel.start(ctx, opInsert)
	err := r.insert(ctx, doc)
	if err == nil {
		c.affected(1)
	}
	c.end(ctx, err)
	return err
}

// insert does the work of Insert, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) insert(ctx context.Context, doc *T) error {
	if doc == nil {
		return invalidf("insert: nil document")
	}
	old := *doc
	if err := r.m.prepareInsert(reflect.ValueOf(doc).Elem(), r.opts.now()); err != nil {
		return err
	}
	if _, err := r.coll.InsertOne(ctx, doc); err != nil {
		*doc = old
		return translate("insert", err)
	}
	return nil
}

// InsertMany inserts docs in as few round trips as the driver can, unordered:
// a document that fails does not stop the others. Each inserted document gets
// its generated fields set as by Insert; a failed one is left as it was. When
// documents fail, the error is an *InsertManyError listing each one's index
// and cause (errors.Is(err, ErrDuplicate) holds for duplicate keys). An
// error of another kind (the connection dropped, say) means that it is not
// known which documents were inserted; their generated ids are then left
// set, so that the caller can look them up. An empty docs is a no-op.
func (r *Repository[T, ID]) InsertMany(ctx context.Context, docs []T) error {
	ctx, c := r.tel.start(ctx, opInsertMany)
	c.batch(len(docs))
	err := r.insertMany(ctx, docs)
	var ie *InsertManyError
	switch {
	case err == nil:
		c.affected(int64(len(docs)))
	case errors.As(err, &ie):
		c.affected(int64(ie.Inserted))
	}
	c.end(ctx, err)
	return err
}

// insertMany does the work of InsertMany, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) insertMany(ctx context.Context, docs []T) error {
	if len(docs) == 0 {
		return nil
	}
	now := r.opts.now()
	olds := slices.Clone(docs)
	batch := make([]any, len(docs))
	for i := range docs {
		if err := r.m.prepareInsert(reflect.ValueOf(&docs[i]).Elem(), now); err != nil {
			copy(docs, olds)
			return fmt.Errorf("document %d: %w", i, err)
		}
		batch[i] = &docs[i]
	}
	_, err := r.coll.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) == 0 {
		return translate("insert many", err)
	}
	ie := &InsertManyError{driver: err}
	for _, we := range bwe.WriteErrors {
		// Each failure's own error, so that its cause is matched on its own.
		one := mongo.WriteException{WriteErrors: mongo.WriteErrors{we.WriteError}}
		ie.Failures = append(ie.Failures, InsertFailure{Index: we.Index, Err: translate(fmt.Sprintf("document %d", we.Index), one)})
		if we.Index >= 0 && we.Index < len(docs) {
			docs[we.Index] = olds[we.Index]
		}
	}
	slices.SortFunc(ie.Failures, func(a, b InsertFailure) int { return a.Index - b.Index })
	ie.Inserted = len(docs) - len(ie.Failures)
	if bwe.WriteConcernError != nil {
		return fmt.Errorf("docrepo: insert many: write concern: %w", ie)
	}
	return ie
}

// Get returns the document with the given id. Errors: ErrNotFound.
func (r *Repository[T, ID]) Get(ctx context.Context, id ID) (T, error) {
	ctx, c := r.tel.start(ctx, opGet)
	doc, err := r.get(ctx, id)
	c.returnedOne(err)
	c.end(ctx, err)
	return doc, err
}

// get does the work of Get, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) get(ctx context.Context, id ID) (T, error) {
	var doc T
	err := r.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if err != nil {
		return doc, translate(fmt.Sprintf("get %v", id), err)
	}
	return doc, nil
}

// FindOne returns the first document that q selects (q.Limit is ignored,
// but a negative one is still ErrInvalid). Errors: ErrNotFound when none
// does, ErrInvalid for a bad query.
func (r *Repository[T, ID]) FindOne(ctx context.Context, q Query) (T, error) {
	ctx, c := r.tel.start(ctx, opFindOne)
	doc, err := r.findOne(ctx, q)
	c.returnedOne(err)
	c.end(ctx, err)
	return doc, err
}

// findOne does the work of FindOne, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) findOne(ctx context.Context, q Query) (T, error) {
	if q.Limit < 0 {
		var zero T
		return zero, invalidf("find one: negative limit %d", q.Limit)
	}
	q.Limit = 1
	docs, err := r.find(ctx, q)
	if err == nil && len(docs) == 0 {
		err = translate("find one", mongo.ErrNoDocuments)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return docs[0], nil
}

// Find returns the documents that q selects, in q's order; none is an empty
// slice, not an error. Errors: ErrInvalid for a bad query.
func (r *Repository[T, ID]) Find(ctx context.Context, q Query) ([]T, error) {
	ctx, c := r.tel.start(ctx, opFind)
	docs, err := r.find(ctx, q)
	if err == nil {
		c.returned(len(docs))
	}
	c.end(ctx, err)
	return docs, err
}

// find does the work of Find, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) find(ctx context.Context, q Query) ([]T, error) {
	filter, opts, err := q.findOptions()
	if err != nil {
		return nil, err
	}
	cur, err := r.coll.Find(ctx, filter, opts)
	if err != nil {
		return nil, translate("find", err)
	}
	docs := []T{}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, translate("find", err)
	}
	return docs, nil
}

// Count returns how many documents f matches. Errors: ErrInvalid.
func (r *Repository[T, ID]) Count(ctx context.Context, f Filter) (int64, error) {
	ctx, c := r.tel.start(ctx, opCount)
	n, err := r.count(ctx, f)
	c.end(ctx, err)
	return n, err
}

// count does the work of Count, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) count(ctx context.Context, f Filter) (int64, error) {
	filter, err := f.BSON()
	if err != nil {
		return 0, err
	}
	n, err := r.coll.CountDocuments(ctx, filter)
	return n, translate("count", err)
}

// Exists reports whether f matches at least one document. Errors: ErrInvalid.
func (r *Repository[T, ID]) Exists(ctx context.Context, f Filter) (bool, error) {
	ctx, c := r.tel.start(ctx, opExists)
	ok, err := r.exists(ctx, f)
	c.end(ctx, err)
	return ok, err
}

// exists does the work of Exists, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) exists(ctx context.Context, f Filter) (bool, error) {
	filter, err := f.BSON()
	if err != nil {
		return false, err
	}
	err = r.coll.FindOne(ctx, filter, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, nil
	}
	return false, translate("exists", err)
}

// Replace writes doc over the stored document with the same id. When T has
// a version field, the write succeeds only if the stored version equals
// doc's, and then increments doc's version; the updated time is set too,
// and nil slice fields become empty (see Repository). On error doc is left
// as it was. Errors: ErrConflict (the stored version
// differs: re-read and retry, or use Modify), ErrNotFound (no document with
// that id), ErrDuplicate, ErrInvalid (nil doc).
func (r *Repository[T, ID]) Replace(ctx context.Context, doc *T) error {
	ctx, c := r.tel.start(ctx, opReplace)
	err := r.replace(ctx, doc)
	if err == nil {
		c.affected(1)
	}
	c.end(ctx, err)
	return err
}

// replace does the work of Replace, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) replace(ctx context.Context, doc *T) error {
	if doc == nil {
		return invalidf("replace: nil document")
	}
	v := reflect.ValueOf(doc).Elem()
	id := v.FieldByIndex(r.m.id).Interface()
	filter := bson.D{{Key: "_id", Value: id}}
	old := *doc
	r.m.emptyNilSlices(v)
	if r.m.version.index != nil {
		f := v.FieldByIndex(r.m.version.index)
		filter = append(filter, bson.E{Key: r.m.version.name, Value: f.Int()})
		f.SetInt(f.Int() + 1)
	}
	if r.m.updated.index != nil {
		v.FieldByIndex(r.m.updated.index).Set(reflect.ValueOf(r.opts.now()))
	}
	res, err := r.coll.ReplaceOne(ctx, filter, doc)
	if err != nil {
		*doc = old
		return translate(fmt.Sprintf("replace %v", id), err)
	}
	if res.MatchedCount > 0 {
		return nil
	}
	*doc = old
	if r.m.version.index == nil {
		return fmt.Errorf("%w: replace %v", ErrNotFound, id)
	}
	// Nothing matched (_id, version): either the version moved on or the
	// document is gone; one more read tells which.
	n, err := r.coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}}, options.Count().SetLimit(1))
	if err != nil {
		return translate(fmt.Sprintf("replace %v", id), err)
	}
	if n == 0 {
		return fmt.Errorf("%w: replace %v", ErrNotFound, id)
	}
	return fmt.Errorf("%w: replace %v: version %v is stale", ErrConflict, id, filter[1].Value)
}

// Modify reads the document with the given id, lets fn change it and writes
// it back with Replace, re-reading and calling fn again whenever another
// writer got there first (ErrConflict), until it succeeds or ctx ends. No
// update is lost. fn must only change the document it is given, and not
// its id (ErrInvalid); an error from fn stops Modify and is returned as is.
// T must have a version field and fn must not be nil (ErrInvalid otherwise,
// before anything is read). Errors: ErrNotFound, ErrDuplicate, ErrInvalid,
// and ctx's error.
func (r *Repository[T, ID]) Modify(ctx context.Context, id ID, fn func(doc *T) error) error {
	ctx, c := r.tel.start(ctx, opModify)
	err := r.modify(ctx, id, fn, c.retry)
	if err == nil {
		c.affected(1)
	}
	c.end(ctx, err)
	return err
}

// modify does the work of Modify, reading and replacing untraced: the
// conflicts it retries on become retry events of Modify's span, reported
// through retry.
func (r *Repository[T, ID]) modify(ctx context.Context, id ID, fn func(doc *T) error, retry func(attempt int, err error)) error {
	if fn == nil {
		return invalidf("modify %v: nil fn", id)
	}
	if r.m.version.index == nil {
		return invalidf("modify: %v has no version field, so concurrent writes could be lost", reflect.TypeFor[T]())
	}
	for attempt := 1; ; attempt++ {
		doc, err := r.get(ctx, id)
		if err != nil {
			return err
		}
		if err := fn(&doc); err != nil {
			return err
		}
		if reflect.ValueOf(&doc).Elem().FieldByIndex(r.m.id).Interface() != any(id) {
			return invalidf("modify %v: fn changed the id", id)
		}
		err = r.replace(ctx, &doc)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("docrepo: modify %v: %w", id, err)
		}
		retry(attempt+1, err)
	}
}

// Update applies u to the document with the given id, also incrementing
// the version and setting the updated time when T has them. Errors:
// ErrNotFound, ErrInvalid (a bad or empty update, or one that writes the
// version or timestamp fields itself), ErrTypeMismatch (the stored field
// is not an array or a number as the operator needs, such as a null
// written by another program; nothing was written), ErrDuplicate.
func (r *Repository[T, ID]) Update(ctx context.Context, id ID, u *Update) error {
	ctx, c := r.tel.start(ctx, opUpdate)
	err := r.update(ctx, id, u)
	if err == nil {
		c.affected(1)
	}
	c.end(ctx, err)
	return err
}

// update does the work of Update, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) update(ctx context.Context, id ID, u *Update) error {
	doc, err := r.updateDoc(u, false)
	if err != nil {
		return err
	}
	res, err := r.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, doc)
	if err != nil {
		return updateError(fmt.Sprintf("update %v", id), u, err, "")
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("%w: update %v", ErrNotFound, id)
	}
	return nil
}

// UpdateMany applies u to every document that f matches, as Update does to
// one, and returns how many matched. The zero Filter is refused (pass All).
// Errors: ErrInvalid, ErrDuplicate, ErrTypeMismatch (as for Update, but the
// documents updated before the failing one stay updated: a multi-document
// update is not atomic).
func (r *Repository[T, ID]) UpdateMany(ctx context.Context, f Filter, u *Update) (int64, error) {
	ctx, c := r.tel.start(ctx, opUpdateMany)
	n, err := r.updateMany(ctx, f, u)
	if err == nil {
		c.affected(n)
	}
	c.end(ctx, err)
	return n, err
}

// updateMany does the work of UpdateMany, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) updateMany(ctx context.Context, f Filter, u *Update) (int64, error) {
	if f.IsZero() {
		return 0, invalidf("update many: zero filter (pass docrepo.All() to update every document)")
	}
	filter, err := f.BSON()
	if err != nil {
		return 0, err
	}
	doc, err := r.updateDoc(u, false)
	if err != nil {
		return 0, err
	}
	res, err := r.coll.UpdateMany(ctx, filter, doc)
	if err != nil {
		// The server stops at the first failing document, keeping the
		// writes before it (MongoDB documents this for multi-updates).
		return 0, updateError("update many", u, err, "the documents updated before it stay updated")
	}
	return res.MatchedCount, nil
}

// Upsert applies u to the document with the given id, creating it first
// when there is none (with only the id, the fields u sets, version 1 and the
// created time), and reports whether it was created. Errors: ErrInvalidID
// (a zero id), ErrInvalid, ErrDuplicate, ErrTypeMismatch (as for Update).
func (r *Repository[T, ID]) Upsert(ctx context.Context, id ID, u *Update) (created bool, err error) {
	ctx, c := r.tel.start(ctx, opUpsert)
	created, err = r.upsert(ctx, id, u)
	if err == nil {
		c.affected(1)
	}
	c.end(ctx, err)
	return created, err
}

// upsert does the work of Upsert, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) upsert(ctx context.Context, id ID, u *Update) (created bool, err error) {
	var zero ID
	if id == zero {
		return false, fmt.Errorf("%w: upsert with a zero id", ErrInvalidID)
	}
	doc, err := r.updateDoc(u, true)
	if err != nil {
		return false, err
	}
	res, err := r.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return false, updateError(fmt.Sprintf("upsert %v", id), u, err, "")
	}
	return res.UpsertedCount > 0, nil
}

// updateDoc adds to u the writes the repository maintains.
func (r *Repository[T, ID]) updateDoc(u *Update, upsert bool) (bson.D, error) {
	if u == nil {
		return nil, invalidf("nil update")
	}
	if _, err := u.BSON(); err != nil {
		return nil, err
	}
	c := *u
	c.set, c.inc = slices.Clip(u.set), slices.Clip(u.inc)
	now := r.opts.now()
	for _, f := range []field{r.m.version, r.m.created, r.m.updated} {
		if f.index != nil && u.touches(f.name) {
			return nil, invalidf("update writes %q, which the repository maintains", f.name)
		}
	}
	if r.m.version.index != nil {
		c.inc = append(c.inc, bson.E{Key: r.m.version.name, Value: 1})
	}
	if r.m.updated.index != nil {
		c.set = append(c.set, bson.E{Key: r.m.updated.name, Value: now})
	}
	d, err := c.BSON()
	if err != nil {
		return nil, err
	}
	if upsert && r.m.created.index != nil {
		d = append(d, bson.E{Key: "$setOnInsert", Value: bson.D{{Key: r.m.created.name, Value: now}}})
	}
	return d, nil
}

// Delete removes the document with the given id. Errors: ErrNotFound.
func (r *Repository[T, ID]) Delete(ctx context.Context, id ID) error {
	ctx, c := r.tel.start(ctx, opDelete)
	err := r.delete(ctx, id)
	if err == nil {
		c.affected(1)
	}
	c.end(ctx, err)
	return err
}

// delete does the work of Delete, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) delete(ctx context.Context, id ID) error {
	res, err := r.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return translate(fmt.Sprintf("delete %v", id), err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("%w: delete %v", ErrNotFound, id)
	}
	return nil
}

// DeleteMany removes every document that f matches and returns how many.
// The zero Filter is refused with ErrInvalid, so that a forgotten filter
// cannot empty the collection: pass All() to delete everything.
func (r *Repository[T, ID]) DeleteMany(ctx context.Context, f Filter) (int64, error) {
	ctx, c := r.tel.start(ctx, opDeleteMany)
	n, err := r.deleteMany(ctx, f)
	if err == nil {
		c.affected(n)
	}
	c.end(ctx, err)
	return n, err
}

// deleteMany does the work of DeleteMany, which adds the telemetry: calls within the
// package use it, so that one call makes one span.
func (r *Repository[T, ID]) deleteMany(ctx context.Context, f Filter) (int64, error) {
	if f.IsZero() {
		return 0, invalidf("delete many: zero filter (pass docrepo.All() to delete every document)")
	}
	filter, err := f.BSON()
	if err != nil {
		return 0, err
	}
	res, err := r.coll.DeleteMany(ctx, filter)
	if err != nil {
		return 0, translate("delete many", err)
	}
	return res.DeletedCount, nil
}
