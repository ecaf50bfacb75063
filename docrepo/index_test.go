package docrepo_test

import (
	"context"
	"testing"
	"time"

	"github.com/polystore/polystore/docrepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// indexSpecs lists the collection's indexes by name.
func indexSpecs(t *testing.T, r *docrepo.Repository[article, bson.ObjectID]) map[string]bson.M {
	t.Helper()
	cur, err := r.Collection().Indexes().List(context.Background())
	require.NoError(t, err)
	var all []bson.M
	require.NoError(t, cur.All(context.Background(), &all))
	out := make(map[string]bson.M, len(all))
	for _, ix := range all {
		out[ix["name"].(string)] = ix
	}
	return out
}

func TestRepository_EnsureIndexes_UniqueAndCompoundAreIdempotent(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	specs := []docrepo.IndexSpec{
		{Name: "title_unique", Keys: []docrepo.IndexKey{{Field: "title"}}, Unique: true},
		{Keys: []docrepo.IndexKey{{Field: "author"}, {Field: "created", Kind: docrepo.Descending}}},
	}

	first, err := r.EnsureIndexes(ctx, specs...)
	require.NoError(t, err)
	second, err := r.EnsureIndexes(ctx, specs...)
	require.NoError(t, err)

	assert.Equal(t, []string{"title_unique", "author_1_created_-1"}, first)
	assert.Equal(t, first, second)
	ix := indexSpecs(t, r)
	assert.Len(t, ix, 3, "_id_ and the two")
	assert.Equal(t, true, ix["title_unique"]["unique"])
	assert.Equal(t, bson.D{{Key: "author", Value: int32(1)}, {Key: "created", Value: int32(-1)}}, ix["author_1_created_-1"]["key"])

	require.NoError(t, r.Insert(ctx, &article{Title: "one"}))
	assert.ErrorIs(t, r.Insert(ctx, &article{Title: "one"}), docrepo.ErrDuplicate, "the unique index is enforced")
}

func TestRepository_EnsureIndexes_SameNameOtherOptionsReturnsErrConflict(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	_, err := r.EnsureIndexes(ctx, docrepo.IndexSpec{Name: "by_title", Keys: []docrepo.IndexKey{{Field: "title"}}})
	require.NoError(t, err)

	for name, spec := range map[string]docrepo.IndexSpec{
		"unique":     {Name: "by_title", Keys: []docrepo.IndexKey{{Field: "title"}}, Unique: true},
		"other keys": {Name: "by_title", Keys: []docrepo.IndexKey{{Field: "title", Kind: docrepo.Descending}}},
	} {
		_, err = r.EnsureIndexes(ctx, spec)
		assert.ErrorIs(t, err, docrepo.ErrConflict, name)
	}
}

func TestRepository_EnsureIndexes_TTLAndText(t *testing.T) {
	ctx := context.Background()
	r, db := articles(t)
	ferret := isFerretDB(t, db)

	t.Run("ttl", func(t *testing.T) {
		names, err := r.EnsureIndexes(ctx, docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "updated"}}, TTL: 90 * time.Second})
		if ferret {
			require.ErrorIs(t, err, docrepo.ErrUnsupported)
			t.Skip("FerretDB 1.24 has no TTL indexes (index option expireAfterSeconds: NotImplemented); EnsureIndexes returned ErrUnsupported")
		}
		require.NoError(t, err)
		assert.EqualValues(t, 90, indexSpecs(t, r)[names[0]]["expireAfterSeconds"])
		_, err = r.EnsureIndexes(ctx, docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "updated"}}, TTL: 90 * time.Second})
		assert.NoError(t, err, "idempotent")
	})
	t.Run("text", func(t *testing.T) {
		spec := docrepo.IndexSpec{Name: "search", Keys: []docrepo.IndexKey{{Field: "title", Kind: docrepo.Text}, {Field: "author", Kind: docrepo.Text}}}
		_, err := r.EnsureIndexes(ctx, spec)
		if ferret {
			require.Error(t, err)
			t.Skipf("FerretDB 1.24 has no text indexes; it answered: %v", err)
		}
		require.NoError(t, err)
		assert.Contains(t, indexSpecs(t, r), "search")
		_, err = r.EnsureIndexes(ctx, spec)
		assert.NoError(t, err, "idempotent")
	})
}

func TestRepository_EnsureIndexes_BadSpecReturnsErrInvalid(t *testing.T) {
	r, _ := articles(t)
	for name, spec := range map[string]docrepo.IndexSpec{
		"no key":         {Name: "x"},
		"operator field": {Keys: []docrepo.IndexKey{{Field: "$where"}}},
		"empty segment":  {Keys: []docrepo.IndexKey{{Field: "a..b"}}},
		"unknown kind":   {Keys: []docrepo.IndexKey{{Field: "a", Kind: 7}}},
		"negative TTL":   {Keys: []docrepo.IndexKey{{Field: "a"}}, TTL: -time.Second},
		"compound TTL":   {Keys: []docrepo.IndexKey{{Field: "a"}, {Field: "b"}}, TTL: time.Hour},
		"TTL too long":   {Keys: []docrepo.IndexKey{{Field: "a"}}, TTL: 100 * 365 * 24 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := r.EnsureIndexes(context.Background(), spec)
			assert.ErrorIs(t, err, docrepo.ErrInvalid)
		})
	}
	// Nested paths are fine in an index: the schema is the developer's.
	_, err := r.EnsureIndexes(context.Background(), docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "meta.lang"}}})
	assert.NoError(t, err)
}
