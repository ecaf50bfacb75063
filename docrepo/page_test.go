package docrepo_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/polystore/polystore/docrepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// walk reads every page of req and returns the documents in order.
func walk(t *testing.T, r *docrepo.Repository[article, bson.ObjectID], req docrepo.PageRequest) []article {
	t.Helper()
	var all []article
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100000, "pagination does not end")
		p, err := r.Page(context.Background(), req)
		require.NoError(t, err)
		all = append(all, p.Items...)
		if p.Next == "" {
			return all
		}
		req.Cursor = p.Next
	}
}

func TestRepository_Page_WalksEveryDocumentOnceInOrder(t *testing.T) {
	r, _ := articles(t)
	docs := make([]article, 23)
	for i := range docs {
		docs[i] = article{Title: "t", Views: i % 4} // ties on views, broken by _id
	}
	seed(t, r, docs...)

	tests := []struct {
		name string
		req  docrepo.PageRequest
	}{
		{"by _id", docrepo.PageRequest{Limit: 5}},
		{"by views", docrepo.PageRequest{SortBy: "views", Limit: 5}},
		{"by views desc", docrepo.PageRequest{SortBy: "views", Desc: true, Limit: 4}},
		{"filtered", docrepo.PageRequest{Filter: docrepo.Gte("views", 2), SortBy: "views", Limit: 3}},
		{"one page", docrepo.PageRequest{SortBy: "views", Limit: 1000}},
		{"exact multiple", docrepo.PageRequest{Filter: docrepo.Lt("views", 2), Limit: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := walk(t, r, tt.req)

			sortBy := []docrepo.SortField{{Field: "_id", Desc: tt.req.Desc}}
			if tt.req.SortBy != "" {
				sortBy = []docrepo.SortField{{Field: tt.req.SortBy, Desc: tt.req.Desc}, {Field: "_id", Desc: tt.req.Desc}}
			}
			want, err := r.Find(context.Background(), docrepo.Query{Filter: tt.req.Filter, Sort: sortBy})
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

func TestRepository_Page_EmptyCollectionGivesOneEmptyPage(t *testing.T) {
	r, _ := articles(t)
	p, err := r.Page(context.Background(), docrepo.PageRequest{SortBy: "views"})
	require.NoError(t, err)
	assert.Empty(t, p.Items)
	assert.Empty(t, p.Next)
}

// A cursor whose checksum is right but whose content is hostile: what a
// client who read this package's source could forge.
func forgedCursor(t *testing.T, d bson.D) string {
	t.Helper()
	b, err := bson.Marshal(d)
	require.NoError(t, err)
	buf := binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(b))
	return base64.RawURLEncoding.EncodeToString(append(buf, b...))
}

func TestRepository_Page_TamperedCursorReturnsErrInvalid(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r, article{Views: 1}, article{Views: 2}, article{Views: 3})
	first, err := r.Page(ctx, docrepo.PageRequest{SortBy: "views", Limit: 1})
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)
	valid := first.Next
	flipped := []byte(valid)
	flipped[len(flipped)/2] ^= 1
	if flipped[len(flipped)/2] == '_' || flipped[len(flipped)/2] == '-' {
		flipped[len(flipped)/2] = 'A'
	}

	tests := []struct {
		name   string
		cursor string
		req    docrepo.PageRequest
	}{
		{"not base64", "!!!", docrepo.PageRequest{SortBy: "views"}},
		{"too short", "AAAA", docrepo.PageRequest{SortBy: "views"}},
		{"truncated", valid[:len(valid)-3], docrepo.PageRequest{SortBy: "views"}},
		{"one character changed", string(flipped), docrepo.PageRequest{SortBy: "views"}},
		{"other sort field", valid, docrepo.PageRequest{SortBy: "title"}},
		{"other direction", valid, docrepo.PageRequest{SortBy: "views", Desc: true}},
		{"forged operator value", forgedCursor(t, bson.D{{Key: "f", Value: "views"}, {Key: "d", Value: false}, {Key: "v", Value: bson.D{{Key: "$gt", Value: 0}}}, {Key: "i", Value: bson.NewObjectID()}}), docrepo.PageRequest{SortBy: "views"}},
		{"forged JavaScript id", forgedCursor(t, bson.D{{Key: "f", Value: "views"}, {Key: "d", Value: false}, {Key: "v", Value: 1}, {Key: "i", Value: bson.JavaScript("1")}}), docrepo.PageRequest{SortBy: "views"}},
		{"forged extra key", forgedCursor(t, bson.D{{Key: "f", Value: "views"}, {Key: "d", Value: false}, {Key: "v", Value: 1}, {Key: "i", Value: 1}, {Key: "x", Value: 1}}), docrepo.PageRequest{SortBy: "views"}},
		{"forged wrong types", forgedCursor(t, bson.D{{Key: "f", Value: 1}, {Key: "d", Value: "no"}, {Key: "v", Value: 1}, {Key: "i", Value: 1}}), docrepo.PageRequest{SortBy: "views"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.Cursor = tt.cursor
			_, err := r.Page(ctx, req)
			assert.ErrorIs(t, err, docrepo.ErrInvalid)
		})
	}
}

func TestRepository_Page_BadRequestReturnsErrInvalid(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	for name, req := range map[string]docrepo.PageRequest{
		"negative limit":      {Limit: -1},
		"limit above maximum": {Limit: 1001},
		"operator sort field": {SortBy: "$natural"},
		"dotted sort field":   {SortBy: "a.b"},
		"bad filter":          {Filter: docrepo.Eq("$where", "1")},
	} {
		_, err := r.Page(ctx, req)
		assert.ErrorIs(t, err, docrepo.ErrInvalid, name)
	}
}

func TestRepository_Page_DocumentWithoutSortFieldReturnsErrInvalid(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r, article{}, article{})
	// A document written outside the repository, without the sort field.
	_, err := r.Collection().UpdateMany(ctx, bson.D{}, bson.D{{Key: "$unset", Value: bson.D{{Key: "views", Value: ""}}}})
	require.NoError(t, err)

	_, err = r.Page(ctx, docrepo.PageRequest{SortBy: "views", Limit: 1})
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
}

func TestRepository_Page_ConcurrentInsertsNeitherRepeatNorSkipExistingDocuments(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	const existing = 10000
	docs := make([]article, existing)
	for i := range docs {
		docs[i] = article{Title: "old", Views: i % 97}
	}
	seed(t, r, docs...)

	// Another writer inserts a batch of documents, with sort values on both
	// sides of the walk's position, while each next page is read. (Bounded,
	// because FerretDB reads and sorts the whole collection for every page.)
	pageDone := make(chan struct{}, 1)
	var inserted atomic.Int64
	var wg sync.WaitGroup
	insertErr := make(chan error, 1)
	wg.Go(func() {
		for range pageDone {
			batch := make([]article, 20)
			for i := range batch {
				batch[i] = article{Title: "new", Views: int(inserted.Load()+int64(i)*5) % 97}
			}
			if err := r.InsertMany(ctx, batch); err != nil {
				insertErr <- err
				return
			}
			inserted.Add(int64(len(batch)))
		}
	})

	seen := make(map[bson.ObjectID]int)
	req := docrepo.PageRequest{SortBy: "views", Limit: 1000}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "pagination does not end")
		p, err := r.Page(ctx, req)
		require.NoError(t, err)
		for _, d := range p.Items {
			seen[d.ID]++
		}
		if p.Next == "" {
			break
		}
		req.Cursor = p.Next
		select {
		case pageDone <- struct{}{}:
		default: // the writer is still busy with the previous batch
		}
	}
	close(pageDone)
	wg.Wait()
	select {
	case err := <-insertErr:
		require.NoError(t, err)
	default:
	}

	t.Logf("%d documents inserted during the walk", inserted.Load())
	require.Positive(t, inserted.Load(), "the walk overlapped no insert: the test proved nothing")
	for _, d := range docs {
		assert.Equal(t, 1, seen[d.ID], "existing document %v", d.ID)
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "document %v returned %d times", id, n)
	}
}

func TestRepository_OffsetPage(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	docs := make([]article, 7)
	for i := range docs {
		docs[i] = article{Views: i}
	}
	seed(t, r, docs...)

	p, err := r.OffsetPage(ctx, docrepo.OffsetRequest{Sort: []docrepo.SortField{docrepo.Desc("views")}, Page: 2, PerPage: 3})
	require.NoError(t, err)
	assert.EqualValues(t, 7, p.Total)
	assert.Equal(t, 2, p.Page)
	assert.Equal(t, 3, p.PerPage)
	require.Len(t, p.Items, 3)
	assert.Equal(t, []int{3, 2, 1}, []int{p.Items[0].Views, p.Items[1].Views, p.Items[2].Views})

	last, err := r.OffsetPage(ctx, docrepo.OffsetRequest{Filter: docrepo.Gte("views", 2), Page: 2, PerPage: 3})
	require.NoError(t, err)
	assert.EqualValues(t, 5, last.Total)
	assert.Len(t, last.Items, 2)

	def, err := r.OffsetPage(ctx, docrepo.OffsetRequest{})
	require.NoError(t, err)
	assert.Equal(t, 1, def.Page)
	assert.Equal(t, 50, def.PerPage)
	assert.Len(t, def.Items, 7)

	for _, req := range []docrepo.OffsetRequest{{Page: -1}, {PerPage: 5000}, {Sort: []docrepo.SortField{docrepo.Asc("$x")}}} {
		_, err := r.OffsetPage(ctx, req)
		assert.ErrorIs(t, err, docrepo.ErrInvalid)
	}
}
