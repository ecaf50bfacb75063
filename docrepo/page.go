package docrepo

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// PageRequest asks Page for one page of a keyset (cursor) pagination.
type PageRequest struct {
	// Filter selects the documents. Default: all.
	Filter Filter
	// SortBy is the field that orders the pages; ties are broken by _id.
	// It must be present, with values of one BSON type, in every document
	// that Filter selects. Default: "" meaning _id alone.
	SortBy string
	// Desc orders from the largest value down. Default: false, ascending.
	Desc bool
	// Limit is the page size. Default (zero): Options.DefaultPageSize (50);
	// negative or above Options.MaxPageSize (1000) gives ErrInvalid.
	Limit int
	// Cursor is Page.Next of the previous page; "" asks for the first page.
	Cursor string
}

// Page is one page of documents and the cursor of the next one.
type Page[T any] struct {
	// Items are the page's documents, in order; empty, not nil, when none.
	Items []T
	// Next is the opaque cursor of the next page, "" after the last page.
	Next string
}

// Page returns the page of documents that follows req.Cursor in the order
// (req.SortBy, _id). Each page starts strictly after the last document of the
// previous one, so documents inserted or deleted between requests never make
// another document appear twice or be skipped (unlike Skip): a document
// present for the whole walk, whose sort field does not change, is returned
// exactly once. Errors: ErrInvalid for a cursor that was tampered with or
// that belongs to another SortBy or direction, a bad filter or field name,
// a bad page size, or a document that lacks the sort field.
func (r *Repository[T, ID]) Page(ctx context.Context, req PageRequest) (Page[T], error) {
	ctx, c := r.tel.start(ctx, opPage)
	page, err := r.page(ctx, req)
	if err == nil {
		c.returned(len(page.Items))
	}
	c.end(ctx, err)
	return page, err
}

func (r *Repository[T, ID]) page(ctx context.Context, req PageRequest) (Page[T], error) {
	var page Page[T]
	limit, err := r.opts.pageSize(req.Limit)
	if err != nil {
		return page, err
	}
	sortBy := req.SortBy
	if sortBy == "" {
		sortBy = "_id"
	}
	if err := checkField(sortBy); err != nil {
		return page, err
	}
	filter, err := req.Filter.BSON()
	if err != nil {
		return page, err
	}
	dir, cmp := 1, "$gt"
	if req.Desc {
		dir, cmp = -1, "$lt"
	}
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor, sortBy, req.Desc)
		if err != nil {
			return page, err
		}
		after := bson.D{{Key: "_id", Value: bson.D{{Key: cmp, Value: c.id}}}}
		if sortBy != "_id" {
			after = bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: sortBy, Value: bson.D{{Key: cmp, Value: c.value}}}},
				bson.D{{Key: sortBy, Value: c.value}, {Key: "_id", Value: bson.D{{Key: cmp, Value: c.id}}}},
			}}}
		}
		if len(filter) > 0 {
			filter = bson.D{{Key: "$and", Value: bson.A{filter, after}}}
		} else {
			filter = after
		}
	}
	sort := bson.D{{Key: sortBy, Value: dir}}
	if sortBy != "_id" {
		sort = append(sort, bson.E{Key: "_id", Value: dir})
	}
	// One more than a page tells whether there is a next page.
	cur, err := r.coll.Find(ctx, filter, options.Find().SetSort(sort).SetLimit(int64(limit)+1))
	if err != nil {
		return page, translate("page", err)
	}
	defer cur.Close(ctx)
	// Room for a page of the usual size; a larger one grows as it comes.
	page.Items = make([]T, 0, min(limit, 256))
	var last bson.Raw
	for cur.Next(ctx) {
		if len(page.Items) == limit {
			next, err := encodeCursor(last, sortBy, req.Desc)
			if err != nil {
				return Page[T]{}, err
			}
			page.Next = next
			break
		}
		var doc T
		if err := cur.Decode(&doc); err != nil {
			return Page[T]{}, translate("page", err)
		}
		page.Items = append(page.Items, doc)
		if len(page.Items) == limit {
			// The cursor, if a next document comes, is made from this one;
			// the driver reuses Current, so keep a copy.
			last = slices.Clone(cur.Current)
		}
	}
	if err := cur.Err(); err != nil {
		return Page[T]{}, translate("page", err)
	}
	return page, nil
}

// cursor is the position after which a page starts.
type cursor struct {
	value, id bson.RawValue
}

// A cursor token is base64url(crc32 || BSON{f, d, v, i}): the sort field and
// direction it belongs to, and the last document's sort value and _id. The
// checksum catches corrupted and hand-edited tokens; the values are checked
// as literals anyway, so a forged token can only move the page's start.
func encodeCursor(last bson.Raw, sortBy string, desc bool) (string, error) {
	id, err := last.LookupErr("_id")
	if err != nil {
		return "", invalidf("page: document without _id")
	}
	value, err := last.LookupErr(sortBy)
	if err != nil {
		return "", invalidf("page: document %v has no sort field %q", id, sortBy)
	}
	b, err := bson.Marshal(bson.D{{Key: "f", Value: sortBy}, {Key: "d", Value: desc}, {Key: "v", Value: value}, {Key: "i", Value: id}})
	if err != nil {
		return "", fmt.Errorf("docrepo: page: encoding the cursor: %w", err)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), crc32.ChecksumIEEE(b))
	return base64.RawURLEncoding.EncodeToString(append(buf, b...)), nil
}

func decodeCursor(token, sortBy string, desc bool) (cursor, error) {
	var c cursor
	buf, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(buf) < 4+5 {
		return c, invalidf("malformed page cursor")
	}
	b := bson.Raw(buf[4:])
	if binary.BigEndian.Uint32(buf) != crc32.ChecksumIEEE(b) || b.Validate() != nil {
		return c, invalidf("malformed page cursor")
	}
	elems, _ := b.Elements()
	if len(elems) != 4 {
		return c, invalidf("malformed page cursor")
	}
	f, okF := elems[0].Value().StringValueOK()
	d, okD := elems[1].Value().BooleanOK()
	if !okF || !okD || elems[0].Key() != "f" || elems[2].Key() != "v" || elems[3].Key() != "i" {
		return c, invalidf("malformed page cursor")
	}
	if f != sortBy || d != desc {
		return c, invalidf("page cursor is for sort %q (desc %v), not %q (desc %v)", f, d, sortBy, desc)
	}
	c.value, c.id = elems[2].Value(), elems[3].Value()
	for _, v := range []bson.RawValue{c.value, c.id} {
		if err := checkLiteral(v.Type, v.Value); err != nil {
			return c, fmt.Errorf("page cursor: %w", err)
		}
	}
	return c, nil
}

// OffsetRequest asks OffsetPage for one page by number.
type OffsetRequest struct {
	// Filter selects the documents. Default: all.
	Filter Filter
	// Sort orders them; _id is added as the last key so that pages are
	// stable. Default: _id.
	Sort []SortField
	// Page is the 1-based page number. Default (zero): 1. Negative, or so
	// large that the offset overflows, gives ErrInvalid.
	Page int
	// PerPage is the page size. Default (zero): Options.DefaultPageSize
	// (50); negative or above Options.MaxPageSize (1000) gives ErrInvalid.
	PerPage int
}

// OffsetResult is one page of an offset pagination.
type OffsetResult[T any] struct {
	// Items are the page's documents, in order.
	Items []T
	// Page is the 1-based page number that was served.
	Page int
	// PerPage is the page size that was used.
	PerPage int
	// Total is how many documents the filter matches, for page counts.
	Total int64
}

// OffsetPage returns page number req.Page, skipping the pages before it.
// Skipping costs server work proportional to the offset and shifts when
// documents are inserted between requests; prefer Page for long or live
// lists. Errors: ErrInvalid (bad page number, size, filter or field).
func (r *Repository[T, ID]) OffsetPage(ctx context.Context, req OffsetRequest) (OffsetResult[T], error) {
	ctx, c := r.tel.start(ctx, opOffsetPage)
	res, err := r.offsetPage(ctx, req)
	if err == nil {
		c.returned(len(res.Items))
	}
	c.end(ctx, err)
	return res, err
}

func (r *Repository[T, ID]) offsetPage(ctx context.Context, req OffsetRequest) (OffsetResult[T], error) {
	var res OffsetResult[T]
	per, err := r.opts.pageSize(req.PerPage)
	if err != nil {
		return res, err
	}
	pageNo := req.Page
	switch {
	case pageNo < 0:
		return res, invalidf("negative page number %d", pageNo)
	case pageNo == 0:
		pageNo = 1
	case int64(pageNo-1) > math.MaxInt64/int64(per):
		return res, invalidf("page %d of %d documents is beyond any collection", pageNo, per)
	}
	sort := req.Sort
	hasID := false
	for _, s := range sort {
		hasID = hasID || s.Field == "_id"
	}
	if !hasID {
		sort = append(sort[:len(sort):len(sort)], Asc("_id"))
	}
	items, err := r.find(ctx, Query{Filter: req.Filter, Sort: sort, Skip: int64(pageNo-1) * int64(per), Limit: int64(per)})
	if err != nil {
		return res, err
	}
	total, err := r.count(ctx, req.Filter)
	if err != nil {
		return res, err
	}
	return OffsetResult[T]{Items: items, Page: pageNo, PerPage: per, Total: total}, nil
}
