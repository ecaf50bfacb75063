package docrepo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// listing has slice fields without omitempty: left nil, the driver's
// default codecs would store them as BSON null, on which the server
// refuses $push and $addToSet.
type listing struct {
	ID      bson.ObjectID `bson:"_id"`
	Title   string        `bson:"title"`
	Tags    []string      `bson:"tags"`
	Scores  []int         `bson:"scores"`
	Notes   []string      `bson:"notes,omitempty"`
	Raw     []byte        `bson:"raw"`
	Codes   codes         `bson:"codes"`
	Meta    listingMeta   `bson:",inline"`
	Views   int           `bson:"views"`
	Version int64         `bson:"version" docrepo:"version"`
}

// listingMeta's fields are top-level fields of a listing document.
type listingMeta struct {
	Labels []string `bson:"labels"`
}

// codes marshals itself, as one comma-separated string: not an array, so
// the repository leaves a nil value to its own encoding.
type codes []string

func (c codes) MarshalBSONValue() (byte, []byte, error) {
	t, b, err := bson.MarshalValue(strings.Join(c, ","))
	return byte(t), b, err
}

func (c *codes) UnmarshalBSONValue(t byte, b []byte) error {
	s, ok := bson.RawValue{Type: bson.Type(t), Value: b}.StringValueOK()
	if !ok {
		return fmt.Errorf("codes: BSON type %v", bson.Type(t))
	}
	if s != "" {
		*c = strings.Split(s, ",")
	}
	return nil
}

func listings(t *testing.T) (*docrepo.Repository[listing, bson.ObjectID], *mongo.Collection) {
	t.Helper()
	db := servicetest.Mongo(t)
	coll := db.Collection("listings")
	r, err := docrepo.New[listing, bson.ObjectID](coll, docrepo.Options{})
	require.NoError(t, err)
	return r, coll
}

// rawDoc reads the stored document as the server holds it.
func rawDoc(t *testing.T, coll *mongo.Collection, id bson.ObjectID) bson.M {
	t.Helper()
	var got bson.M
	require.NoError(t, coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&got))
	return got
}

func TestRepository_NilSlicesAreStoredAsEmptyArraysSoPushAndAddToSetWork(t *testing.T) {
	ctx := context.Background()
	r, coll := listings(t)

	tests := []struct {
		name  string
		write func(t *testing.T) bson.ObjectID
	}{
		{"Insert", func(t *testing.T) bson.ObjectID {
			l := listing{Title: "a"}
			require.NoError(t, r.Insert(ctx, &l))
			assert.Equal(t, []string{}, l.Tags, "the value in hand is what Get returns")
			got, err := r.Get(ctx, l.ID)
			require.NoError(t, err)
			assert.Equal(t, l, got)
			assert.Equal(t, bson.A{}, rawDoc(t, coll, l.ID)["labels"], "an inlined struct's fields are top-level fields")
			return l.ID
		}},
		{"InsertMany", func(t *testing.T) bson.ObjectID {
			docs := []listing{{Title: "a"}, {Title: "b"}}
			require.NoError(t, r.InsertMany(ctx, docs))
			assert.Equal(t, []string{}, docs[1].Tags)
			return docs[1].ID
		}},
		{"Replace of a document read from a stored null", func(t *testing.T) bson.ObjectID {
			id := bson.NewObjectID()
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "tags", Value: nil}, {Key: "scores", Value: nil}, {Key: "version", Value: 1}})
			require.NoError(t, err)
			l, err := r.Get(ctx, id)
			require.NoError(t, err)
			require.Nil(t, l.Tags, "null decodes as a nil slice")
			require.NoError(t, r.Replace(ctx, &l))
			return id
		}},
		{"Modify", func(t *testing.T) bson.ObjectID {
			id := bson.NewObjectID()
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "tags", Value: nil}, {Key: "scores", Value: nil}, {Key: "version", Value: 1}})
			require.NoError(t, err)
			require.NoError(t, r.Modify(ctx, id, func(l *listing) error { l.Title = "m"; return nil }))
			return id
		}},
		{"Upsert setting nil slices", func(t *testing.T) bson.ObjectID {
			id := bson.NewObjectID()
			created, err := r.Upsert(ctx, id, docrepo.NewUpdate().Set("tags", []string(nil)).Set("scores", []int(nil)))
			require.NoError(t, err)
			require.True(t, created)
			return id
		}},
		{"Update setting nil slices", func(t *testing.T) bson.ObjectID {
			l := listing{Tags: []string{"old"}, Scores: []int{1}}
			require.NoError(t, r.Insert(ctx, &l))
			require.NoError(t, r.Update(ctx, l.ID, docrepo.NewUpdate().Set("tags", []string(nil)).Set("scores", []int(nil))))
			return l.ID
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.write(t)

			stored := rawDoc(t, coll, id)
			assert.Equal(t, bson.A{}, stored["tags"], "an empty array, not null")
			assert.Equal(t, bson.A{}, stored["scores"])

			require.NoError(t, r.Update(ctx, id, docrepo.NewUpdate().AddToSet("tags", "go", "go").Push("scores", 7)))
			require.NoError(t, r.Update(ctx, id, docrepo.NewUpdate().Push("tags", "db")))

			got, err := r.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, []string{"go", "db"}, got.Tags)
			assert.Equal(t, []int{7}, got.Scores)
		})
	}
}

func TestRepository_NilSlicesOtherThanArraysKeepTheDriversEncoding(t *testing.T) {
	ctx := context.Background()
	r, coll := listings(t)
	l := listing{Title: "a"}

	require.NoError(t, r.Insert(ctx, &l))

	stored := rawDoc(t, coll, l.ID)
	assert.NotContains(t, stored, "notes", "omitempty still leaves a nil slice out")
	assert.Nil(t, l.Notes)
	assert.Contains(t, stored, "raw")
	assert.Nil(t, stored["raw"], "a nil []byte is binary data, stored as null as the driver does")
	assert.Nil(t, l.Raw)
	assert.Equal(t, "", stored["codes"], "a type that marshals itself is left to its marshaller")
	assert.Nil(t, l.Codes)
}

func TestFilter_EqNilSliceFindsWhatInsertStored(t *testing.T) {
	ctx := context.Background()
	r, _ := listings(t)
	l := listing{Title: "no tags"}
	require.NoError(t, r.Insert(ctx, &l))

	got, err := r.Find(ctx, docrepo.Query{Filter: docrepo.Eq("tags", []string(nil))})

	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, l.ID, got[0].ID)
}

func TestRepository_Update_FieldOfAnotherTypeReturnsErrTypeMismatchNamingIt(t *testing.T) {
	ctx := context.Background()
	r, coll := listings(t)
	// Written by another program with the driver's default codecs: a nil
	// slice stored as null, which no docrepo write produces.
	id := bson.NewObjectID()
	_, err := coll.InsertOne(ctx, bson.D{
		{Key: "_id", Value: id}, {Key: "title", Value: "x"}, {Key: "tags", Value: nil},
		{Key: "views", Value: 1}, {Key: "version", Value: 1},
	})
	require.NoError(t, err)
	before := rawDoc(t, coll, id)

	tests := []struct {
		name        string
		u           *docrepo.Update
		field, kind string
	}{
		{"Push on null", docrepo.NewUpdate().Push("tags", "a"), "tags", "null, not an array"},
		{"PushSlice on null", docrepo.NewUpdate().PushSlice("tags", -3, "a"), "tags", "null, not an array"},
		{"AddToSet on null", docrepo.NewUpdate().AddToSet("tags", "a"), "tags", "null, not an array"},
		{"Pull on null", docrepo.NewUpdate().Pull("tags", "a"), "tags", "not an array"},
		{"Push on a string", docrepo.NewUpdate().Push("title", "a"), "title", "string, not an array"},
		{"Inc on a string", docrepo.NewUpdate().Inc("title", 1), "title", "string, not a number"},
		{"Inc on null", docrepo.NewUpdate().Inc("tags", 1), "tags", "null, not a number"},
		{"Push on null beside a valid Set", docrepo.NewUpdate().Set("views", 9).Push("tags", "a"), "tags", "null, not an array"},
		{"Pull on null beside a valid Inc", docrepo.NewUpdate().Pull("tags", "a").Inc("views", 1), "tags", "not an array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Update(ctx, id, tt.u)

			require.ErrorIs(t, err, docrepo.ErrTypeMismatch)
			assert.ErrorIs(t, err, docrepo.ErrInvalid, "a type mismatch is invalid input")
			assert.NotErrorIs(t, err, docrepo.ErrNotFound)
			var we mongo.WriteException
			assert.ErrorAs(t, err, &we, "the driver's error stays reachable")
			assert.Contains(t, err.Error(), `field "`+tt.field+`"`)
			assert.Contains(t, err.Error(), tt.kind)
			assert.Contains(t, err.Error(), "nothing was written")
			assert.Equal(t, before, rawDoc(t, coll, id), "the document, version included, is unchanged")
		})
	}

	t.Run("Upsert of an existing document", func(t *testing.T) {
		_, err := r.Upsert(ctx, id, docrepo.NewUpdate().AddToSet("tags", "a"))
		require.ErrorIs(t, err, docrepo.ErrTypeMismatch)
		assert.Contains(t, err.Error(), `field "tags"`)
		assert.Equal(t, before, rawDoc(t, coll, id))
	})
	t.Run("UpdateMany", func(t *testing.T) {
		_, err := r.UpdateMany(ctx, docrepo.Eq("_id", id), docrepo.NewUpdate().Push("tags", "a"))
		require.ErrorIs(t, err, docrepo.ErrTypeMismatch)
		assert.Contains(t, err.Error(), `field "tags"`)
		assert.Contains(t, err.Error(), "the documents updated before it stay updated")
		assert.Equal(t, before, rawDoc(t, coll, id))
	})
	t.Run("a Replace repairs the document", func(t *testing.T) {
		l, err := r.Get(ctx, id)
		require.NoError(t, err)
		require.NoError(t, r.Replace(ctx, &l))
		require.NoError(t, r.Update(ctx, id, docrepo.NewUpdate().Push("tags", "a")))
	})
}

func TestErrTypeMismatch_MatchesErrInvalid(t *testing.T) {
	assert.ErrorIs(t, docrepo.ErrTypeMismatch, docrepo.ErrInvalid)
	assert.NotErrorIs(t, docrepo.ErrInvalid, docrepo.ErrTypeMismatch)
	assert.NotErrorIs(t, docrepo.ErrTypeMismatch, docrepo.ErrConflict)
}
