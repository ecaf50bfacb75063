package docrepo_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestNew_BadDocumentTypeReturnsErrInvalid(t *testing.T) {
	// A client that never connects: New does no I/O.
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1"))
	require.NoError(t, err)
	coll := client.Database("x").Collection("y")

	type noID struct{ Name string }
	type wrongIDType struct {
		ID string `bson:"_id"`
	}
	type stringVersion struct {
		ID bson.ObjectID `bson:"_id"`
		V  string        `bson:"v" docrepo:"version"`
	}
	type intCreated struct {
		ID bson.ObjectID `bson:"_id"`
		C  int           `bson:"c" docrepo:"created"`
	}
	type unknownTag struct {
		ID bson.ObjectID `bson:"_id"`
		X  int           `bson:"x" docrepo:"vrsion"`
	}
	type twoVersions struct {
		ID bson.ObjectID `bson:"_id"`
		A  int           `bson:"a" docrepo:"version"`
		B  int           `bson:"b" docrepo:"version"`
	}
	type skippedTagged struct {
		ID bson.ObjectID `bson:"_id"`
		V  int           `bson:"-" docrepo:"version"`
	}
	tests := []struct {
		name string
		new  func() error
	}{
		{"not a struct", func() error { _, err := docrepo.New[int, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"pointer type", func() error { _, err := docrepo.New[*article, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"no _id field", func() error { _, err := docrepo.New[noID, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"_id of another type", func() error { _, err := docrepo.New[wrongIDType, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"string version", func() error { _, err := docrepo.New[stringVersion, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"int created", func() error { _, err := docrepo.New[intCreated, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"unknown docrepo tag", func() error { _, err := docrepo.New[unknownTag, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"two version fields", func() error { _, err := docrepo.New[twoVersions, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"tagged field not encoded", func() error { _, err := docrepo.New[skippedTagged, bson.ObjectID](coll, docrepo.Options{}); return err }},
		{"nil collection", func() error { _, err := docrepo.New[article, bson.ObjectID](nil, docrepo.Options{}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.new(), docrepo.ErrInvalid)
		})
	}
}

func TestParseID(t *testing.T) {
	id := bson.NewObjectID()
	got, err := docrepo.ParseID(id.Hex())
	require.NoError(t, err)
	assert.Equal(t, id, got)

	for _, s := range []string{"", "xyz", id.Hex()[:23], id.Hex() + "0", "zzzzzzzzzzzzzzzzzzzzzzzz", "é" + id.Hex()[2:], `{"$gt":""}`} {
		_, err := docrepo.ParseID(s)
		assert.ErrorIs(t, err, docrepo.ErrInvalidID, "ParseID(%q)", s)
	}
}

func TestRepository_Insert_GeneratesIDVersionAndTimestamps(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	before := time.Now().Add(-time.Second)

	a := article{Title: "first"}
	require.NoError(t, r.Insert(ctx, &a))

	assert.False(t, a.ID.IsZero())
	assert.EqualValues(t, 1, a.Version)
	assert.True(t, a.Created.After(before), "created %v", a.Created)
	assert.Equal(t, a.Created, a.Updated)
	got, err := r.Get(ctx, a.ID)
	require.NoError(t, err)
	// Timestamps are kept to the millisecond, in UTC, so the round trip is exact.
	assert.Equal(t, a, got)
}

func TestRepository_Insert_KeepsGivenIDAndCreatedTime(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	id := bson.NewObjectID()
	created := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

	a := article{ID: id, Title: "imported", Created: created}
	require.NoError(t, r.Insert(ctx, &a))

	assert.Equal(t, id, a.ID)
	assert.Equal(t, created, a.Created)
	assert.True(t, a.Updated.After(created))
}

func TestRepository_Insert_DuplicateIDReturnsErrDuplicateAndLeavesDocUnchanged(t *testing.T) {
	ctx := context.Background()
	r := accounts(t)
	require.NoError(t, r.Insert(ctx, &account{Email: "a@example.com", Name: "first"}))

	dup := account{Email: "a@example.com", Name: "second"}
	err := r.Insert(ctx, &dup)

	require.ErrorIs(t, err, docrepo.ErrDuplicate)
	var we mongo.WriteException
	assert.ErrorAs(t, err, &we, "the driver's error stays reachable")
	assert.Equal(t, account{Email: "a@example.com", Name: "second"}, dup)
	got, err := r.Get(ctx, "a@example.com")
	require.NoError(t, err)
	assert.Equal(t, "first", got.Name)
}

func TestRepository_Insert_UniqueIndexViolationReturnsErrDuplicateNamingIndex(t *testing.T) {
	ctx := context.Background()
	r, db := articles(t)
	_, err := r.EnsureIndexes(ctx, docrepo.IndexSpec{Name: "title_unique", Keys: []docrepo.IndexKey{{Field: "title"}}, Unique: true})
	require.NoError(t, err)
	require.NoError(t, r.Insert(ctx, &article{Title: "same"}))

	a := article{Title: "same"}
	err = r.Insert(ctx, &a)

	require.ErrorIs(t, err, docrepo.ErrDuplicate)
	assert.True(t, a.ID.IsZero(), "the generated id is taken back on failure")
	if isFerretDB(t, db) {
		// FerretDB's E11000 message names the collection, not the index.
		assert.Contains(t, err.Error(), "index not named by the server")
	} else {
		assert.Contains(t, err.Error(), "index title_unique")
	}
}

func TestRepository_Insert_BadInputReturnsError(t *testing.T) {
	ctx := context.Background()
	assert.ErrorIs(t, accounts(t).Insert(ctx, &account{Name: "no id"}), docrepo.ErrInvalidID)
	r, _ := articles(t)
	assert.ErrorIs(t, r.Insert(ctx, nil), docrepo.ErrInvalid)
}

func TestRepository_InsertMany_SetsGeneratedFields(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	docs := []article{{Title: "a"}, {Title: "b"}, {Title: "c"}}

	require.NoError(t, r.InsertMany(ctx, docs))
	require.NoError(t, r.InsertMany(ctx, nil), "an empty batch is a no-op")

	for _, d := range docs {
		got, err := r.Get(ctx, d.ID)
		require.NoError(t, err)
		assert.Equal(t, d, got)
	}
}

func TestRepository_InsertMany_ReportsEachFailedDocumentAndInsertsTheRest(t *testing.T) {
	ctx := context.Background()
	r := accounts(t)
	require.NoError(t, r.Insert(ctx, &account{Email: "taken@example.com"}))
	docs := []account{
		{Email: "a@example.com"},
		{Email: "taken@example.com", Name: "dup of existing"},
		{Email: "b@example.com"},
		{Email: "a@example.com", Name: "dup within batch"},
		{Email: "c@example.com"},
	}

	err := r.InsertMany(ctx, docs)

	var ime *docrepo.InsertManyError
	require.ErrorAs(t, err, &ime)
	assert.Equal(t, 3, ime.Inserted)
	require.Len(t, ime.Failures, 2)
	assert.Equal(t, 1, ime.Failures[0].Index)
	assert.Equal(t, 3, ime.Failures[1].Index)
	for _, f := range ime.Failures {
		assert.ErrorIs(t, f.Err, docrepo.ErrDuplicate)
	}
	assert.ErrorIs(t, err, docrepo.ErrDuplicate)
	var bwe mongo.BulkWriteException
	assert.ErrorAs(t, err, &bwe)
	assert.Contains(t, err.Error(), "3 inserted, 2 failed")
	assert.Contains(t, err.Error(), "[1] docrepo: duplicate key")
	assert.Contains(t, err.Error(), "[3] docrepo: duplicate key")
	n, err := r.Count(ctx, docrepo.All())
	require.NoError(t, err)
	assert.EqualValues(t, 4, n, "the existing account and the three new ones")
}

func TestRepository_Get_MissingReturnsErrNotFound(t *testing.T) {
	r, _ := articles(t)

	_, err := r.Get(context.Background(), bson.NewObjectID())

	require.ErrorIs(t, err, docrepo.ErrNotFound)
	assert.ErrorIs(t, err, mongo.ErrNoDocuments, "the driver's error stays reachable")
	// cacherepo recognises a miss by behaviour, without importing docrepo.
	var nf interface{ NotFound() bool }
	require.ErrorAs(t, err, &nf)
	assert.True(t, nf.NotFound())
}

func TestRepository_FindOne(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r, article{Title: "a", Author: "ann", Views: 3}, article{Title: "b", Author: "ann", Views: 9}, article{Title: "c", Author: "bob", Views: 5})

	got, err := r.FindOne(ctx, docrepo.Query{Filter: docrepo.Eq("author", "ann"), Sort: []docrepo.SortField{docrepo.Desc("views")}})
	require.NoError(t, err)
	assert.Equal(t, "b", got.Title)

	_, err = r.FindOne(ctx, docrepo.Query{Filter: docrepo.Eq("author", "carl")})
	assert.ErrorIs(t, err, docrepo.ErrNotFound)
	_, err = r.FindOne(ctx, docrepo.Query{Filter: docrepo.Eq("$where", "1")})
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
}

func TestRepository_Find(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r,
		article{Title: "a", Author: "ann", Views: 3, Tags: []string{"go"}},
		article{Title: "b", Author: "ann", Views: 9},
		article{Title: "c", Author: "bob", Views: 5, Tags: []string{"go", "db"}},
		article{Title: "d", Author: "cat", Views: 1},
	)
	titles := func(docs []article) []string {
		out := make([]string, len(docs))
		for i, d := range docs {
			out[i] = d.Title
		}
		return out
	}
	tests := []struct {
		name string
		q    docrepo.Query
		want []string
	}{
		{"all sorted", docrepo.Query{Sort: []docrepo.SortField{docrepo.Asc("title")}}, []string{"a", "b", "c", "d"}},
		{"eq", docrepo.Query{Filter: docrepo.Eq("author", "ann"), Sort: []docrepo.SortField{docrepo.Asc("title")}}, []string{"a", "b"}},
		{"ne", docrepo.Query{Filter: docrepo.Ne("author", "ann"), Sort: []docrepo.SortField{docrepo.Asc("title")}}, []string{"c", "d"}},
		{"gt", docrepo.Query{Filter: docrepo.Gt("views", 3), Sort: []docrepo.SortField{docrepo.Desc("views")}}, []string{"b", "c"}},
		{"gte lte", docrepo.Query{Filter: docrepo.And(docrepo.Gte("views", 3), docrepo.Lte("views", 5)), Sort: []docrepo.SortField{docrepo.Asc("views")}}, []string{"a", "c"}},
		{"lt", docrepo.Query{Filter: docrepo.Lt("views", 3)}, []string{"d"}},
		{"in", docrepo.Query{Filter: docrepo.In("author", "bob", "cat"), Sort: []docrepo.SortField{docrepo.Asc("title")}}, []string{"c", "d"}},
		{"in nothing", docrepo.Query{Filter: docrepo.In("author")}, []string{}},
		{"nin", docrepo.Query{Filter: docrepo.Nin("author", "bob", "cat"), Sort: []docrepo.SortField{docrepo.Asc("title")}}, []string{"a", "b"}},
		{"exists", docrepo.Query{Filter: docrepo.Exists("tags", true), Sort: []docrepo.SortField{docrepo.Asc("title")}}, []string{"a", "c"}},
		{"array element", docrepo.Query{Filter: docrepo.Eq("tags", "db")}, []string{"c"}},
		{"or", docrepo.Query{Filter: docrepo.Or(docrepo.Eq("author", "cat"), docrepo.Gt("views", 8)), Sort: []docrepo.SortField{docrepo.Asc("title")}}, []string{"b", "d"}},
		{"skip limit", docrepo.Query{Sort: []docrepo.SortField{docrepo.Asc("title")}, Skip: 1, Limit: 2}, []string{"b", "c"}},
		{"two sort keys", docrepo.Query{Sort: []docrepo.SortField{docrepo.Asc("author"), docrepo.Desc("views")}}, []string{"b", "a", "c", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Find(ctx, tt.q)
			require.NoError(t, err)
			assert.Equal(t, tt.want, titles(got))
		})
	}

	t.Run("projection", func(t *testing.T) {
		got, err := r.Find(ctx, docrepo.Query{Filter: docrepo.Eq("title", "c"), Fields: []string{"title"}})
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, "c", got[0].Title)
		assert.False(t, got[0].ID.IsZero(), "_id always comes back")
		assert.Empty(t, got[0].Author)
		assert.Zero(t, got[0].Views)
	})
	t.Run("bad query", func(t *testing.T) {
		for _, q := range []docrepo.Query{
			{Sort: []docrepo.SortField{docrepo.Asc("$natural")}},
			{Fields: []string{"a.b"}},
			{Limit: -1},
			{Filter: docrepo.Gt("views", bson.M{"$gt": 1})},
		} {
			_, err := r.Find(ctx, q)
			assert.ErrorIs(t, err, docrepo.ErrInvalid, "%+v", q)
		}
	})
}

func TestRepository_Replace_WritesAndIncrementsVersion(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	a := article{Title: "draft"}
	require.NoError(t, r.Insert(ctx, &a))
	created := a.Created

	a.Title = "final"
	require.NoError(t, r.Replace(ctx, &a))

	assert.EqualValues(t, 2, a.Version)
	assert.Equal(t, created, a.Created)
	assert.False(t, a.Updated.Before(created))
	got, err := r.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, a, got)
}

func TestRepository_Replace_StaleVersionReturnsErrConflict(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	a := article{Title: "v1"}
	require.NoError(t, r.Insert(ctx, &a))
	stale := a
	a.Title = "v2"
	require.NoError(t, r.Replace(ctx, &a))

	stale.Title = "lost?"
	err := r.Replace(ctx, &stale)

	require.ErrorIs(t, err, docrepo.ErrConflict)
	assert.EqualValues(t, 1, stale.Version, "the value is left as it was")
	assert.Equal(t, "lost?", stale.Title)
	got, err := r.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, "v2", got.Title)
}

func TestRepository_Replace_MissingReturnsErrNotFound(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	assert.ErrorIs(t, r.Replace(ctx, &article{ID: bson.NewObjectID(), Version: 1}), docrepo.ErrNotFound)
	assert.ErrorIs(t, r.Replace(ctx, nil), docrepo.ErrInvalid)

	// Without a version field, Replace is a plain replace by id.
	acc := accounts(t)
	assert.ErrorIs(t, acc.Replace(ctx, &account{Email: "nobody@example.com"}), docrepo.ErrNotFound)
	require.NoError(t, acc.Insert(ctx, &account{Email: "x@example.com", Name: "x"}))
	require.NoError(t, acc.Replace(ctx, &account{Email: "x@example.com", Name: "y"}))
	got, err := acc.Get(ctx, "x@example.com")
	require.NoError(t, err)
	assert.Equal(t, "y", got.Name)
}

func TestRepository_Update_MissingReturnsErrNotFound(t *testing.T) {
	r, _ := articles(t)
	err := r.Update(context.Background(), bson.NewObjectID(), docrepo.NewUpdate().Set("title", "x"))
	assert.ErrorIs(t, err, docrepo.ErrNotFound)
}

func TestRepository_Update_Operators(t *testing.T) {
	ctx := context.Background()
	_, db := articles(t)
	ferret := isFerretDB(t, db)
	// A clock that moves a second per reading, so the updated time of an
	// update differs from the insert's even within one millisecond.
	var mu sync.Mutex
	tick := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r, err := docrepo.New[article, bson.ObjectID](db.Collection("clocked"), docrepo.Options{Clock: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		tick = tick.Add(time.Second)
		return tick
	}})
	require.NoError(t, err)

	tests := []struct {
		name  string
		start article
		u     *docrepo.Update
		check func(t *testing.T, got bson.M)
	}{
		{"set", article{Title: "a"}, docrepo.NewUpdate().Set("title", "b").Set("extra", bson.M{"k": 1}),
			func(t *testing.T, got bson.M) {
				assert.Equal(t, "b", got["title"])
				assert.Equal(t, bson.D{{Key: "k", Value: int32(1)}}, got["extra"])
			}},
		{"unset", article{Title: "a", Author: "ann"}, docrepo.NewUpdate().Unset("author"),
			func(t *testing.T, got bson.M) { assert.NotContains(t, got, "author") }},
		{"inc", article{Views: 5}, docrepo.NewUpdate().Inc("views", 3).Inc("missing", 2.5),
			func(t *testing.T, got bson.M) {
				assert.EqualValues(t, 8, got["views"])
				assert.Equal(t, 2.5, got["missing"])
			}},
		{"push", article{Tags: []string{"a"}}, docrepo.NewUpdate().Push("tags", "b", "c"),
			func(t *testing.T, got bson.M) { assert.Equal(t, bson.A{"a", "b", "c"}, got["tags"]) }},
		{"push slice", article{Tags: []string{"a", "b"}}, docrepo.NewUpdate().PushSlice("tags", -2, "c", "d"),
			func(t *testing.T, got bson.M) {
				if ferret {
					t.Skip("FerretDB 1.24 ignores $slice in $push (the update document is checked in TestUpdate_BSON)")
				}
				assert.Equal(t, bson.A{"c", "d"}, got["tags"])
			}},
		{"pull", article{Tags: []string{"a", "b", "a"}}, docrepo.NewUpdate().Pull("tags", "a"),
			func(t *testing.T, got bson.M) { assert.Equal(t, bson.A{"b"}, got["tags"]) }},
		{"add to set", article{Tags: []string{"a"}}, docrepo.NewUpdate().AddToSet("tags", "a", "b", "b"),
			func(t *testing.T, got bson.M) { assert.Equal(t, bson.A{"a", "b"}, got["tags"]) }},
		{"current date", article{}, docrepo.NewUpdate().CurrentDate("seen"),
			func(t *testing.T, got bson.M) {
				seen, ok := got["seen"].(bson.DateTime)
				require.True(t, ok, "seen is %T", got["seen"])
				// The server's clock, not ours: allow a second of skew.
				// The server's clock: only its type and rough era can be checked.
				assert.True(t, seen.Time().After(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)), "seen %v", seen.Time())
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.start
			require.NoError(t, r.Insert(ctx, &a))

			require.NoError(t, r.Update(ctx, a.ID, tt.u))

			var got bson.M
			require.NoError(t, r.Collection().FindOne(ctx, bson.D{{Key: "_id", Value: a.ID}}).Decode(&got))
			assert.EqualValues(t, 2, got["version"], "Update increments the version")
			assert.Equal(t, bson.NewDateTimeFromTime(a.Updated.Add(time.Second)), got["updated"], "Update sets the updated time")
			tt.check(t, got)
		})
	}
}

func TestRepository_Update_BadUpdateReturnsErrInvalid(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	a := article{Title: "a"}
	require.NoError(t, r.Insert(ctx, &a))

	tests := map[string]*docrepo.Update{
		"nil":                     nil,
		"empty":                   docrepo.NewUpdate(),
		"operator field":          docrepo.NewUpdate().Set("$where", "1"),
		"dotted field":            docrepo.NewUpdate().Set("a.b", 1),
		"NUL in field":            docrepo.NewUpdate().Set("a\x00", 1),
		"_id":                     docrepo.NewUpdate().Set("_id", 1),
		"same field twice":        docrepo.NewUpdate().Set("title", "x").Unset("title"),
		"maintained version":      docrepo.NewUpdate().Inc("version", 1),
		"maintained updated time": docrepo.NewUpdate().Set("updated", time.Now()),
		"inc by a string":         docrepo.NewUpdate().Inc("views", "1"),
		"operator-shaped value":   docrepo.NewUpdate().Set("title", bson.M{"$gt": ""}),
		"operator-shaped pull":    docrepo.NewUpdate().Pull("tags", bson.M{"$ne": nil}),
		"regular expression pull": docrepo.NewUpdate().Pull("tags", bson.Regex{Pattern: ".*"}),
		"JavaScript value":        docrepo.NewUpdate().Set("title", bson.JavaScript("sleep(1000)")),
		"nested operator in push": docrepo.NewUpdate().Push("tags", bson.D{{Key: "x", Value: bson.D{{Key: "$inc", Value: 1}}}}),
	}
	for name, u := range tests {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, r.Update(ctx, a.ID, u), docrepo.ErrInvalid)
		})
	}
	got, err := r.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, a, got, "no bad update reached the document")
}

func TestRepository_UpdateMany(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r, article{Author: "ann"}, article{Author: "ann"}, article{Author: "bob"})

	n, err := r.UpdateMany(ctx, docrepo.Eq("author", "ann"), docrepo.NewUpdate().Inc("views", 1))
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	count, err := r.Count(ctx, docrepo.Eq("views", 1))
	require.NoError(t, err)
	assert.EqualValues(t, 2, count)

	_, err = r.UpdateMany(ctx, docrepo.Filter{}, docrepo.NewUpdate().Inc("views", 1))
	assert.ErrorIs(t, err, docrepo.ErrInvalid, "the zero filter is refused")
	n, err = r.UpdateMany(ctx, docrepo.All(), docrepo.NewUpdate().Inc("views", 1))
	require.NoError(t, err)
	assert.EqualValues(t, 3, n)
}

func TestRepository_Upsert_CreatesThenUpdates(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	id := bson.NewObjectID()

	created, err := r.Upsert(ctx, id, docrepo.NewUpdate().Set("title", "new").Inc("views", 1))
	require.NoError(t, err)
	assert.True(t, created)
	first, err := r.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "new", first.Title)
	assert.EqualValues(t, 1, first.Version)
	assert.False(t, first.Created.IsZero())

	created, err = r.Upsert(ctx, id, docrepo.NewUpdate().Set("title", "again").Inc("views", 1))
	require.NoError(t, err)
	assert.False(t, created)
	second, err := r.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "again", second.Title)
	assert.Equal(t, 2, second.Views)
	assert.EqualValues(t, 2, second.Version)
	assert.Equal(t, first.Created, second.Created, "the created time is set once")

	_, err = r.Upsert(ctx, id, docrepo.NewUpdate())
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
	_, err = r.Upsert(ctx, bson.ObjectID{}, docrepo.NewUpdate().Set("title", "x"))
	assert.ErrorIs(t, err, docrepo.ErrInvalidID)
}

func TestRepository_Delete(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	a := article{Title: "gone"}
	require.NoError(t, r.Insert(ctx, &a))

	require.NoError(t, r.Delete(ctx, a.ID))

	_, err := r.Get(ctx, a.ID)
	assert.ErrorIs(t, err, docrepo.ErrNotFound)
	assert.ErrorIs(t, r.Delete(ctx, a.ID), docrepo.ErrNotFound, "nothing left to delete")
}

func TestRepository_DeleteMany(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r, article{Author: "ann"}, article{Author: "ann"}, article{Author: "bob"})

	_, err := r.DeleteMany(ctx, docrepo.Filter{})
	require.ErrorIs(t, err, docrepo.ErrInvalid, "the zero filter is refused")
	_, err = r.DeleteMany(ctx, docrepo.Eq("author.name", "x"))
	require.ErrorIs(t, err, docrepo.ErrInvalid)

	n, err := r.DeleteMany(ctx, docrepo.Eq("author", "ann"))
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	n, err = r.DeleteMany(ctx, docrepo.Eq("author", "ann"))
	require.NoError(t, err)
	assert.Zero(t, n)
	n, err = r.DeleteMany(ctx, docrepo.All())
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
}

func TestRepository_CountAndExists(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r, article{Author: "ann"}, article{Author: "ann"}, article{Author: "bob"})

	n, err := r.Count(ctx, docrepo.Eq("author", "ann"))
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	n, err = r.Count(ctx, docrepo.Filter{})
	require.NoError(t, err)
	assert.EqualValues(t, 3, n)

	ok, err := r.Exists(ctx, docrepo.Eq("author", "bob"))
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = r.Exists(ctx, docrepo.Eq("author", "carl"))
	require.NoError(t, err)
	assert.False(t, ok)

	_, err = r.Count(ctx, docrepo.Eq("$expr", 1))
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
	_, err = r.Exists(ctx, docrepo.In("author", bson.M{"$gt": ""}))
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
}

func TestRepository_ContextCanceledReturnsContextError(t *testing.T) {
	r, _ := articles(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := r.Get(ctx, bson.NewObjectID())

	assert.True(t, errors.Is(err, context.Canceled), "got %v", err)
	assert.NotErrorIs(t, err, docrepo.ErrNotFound)
}

func TestOptions_ClockAndPageSizes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	r, err := docrepo.New[article, bson.ObjectID](servicetest.Mongo(t).Collection("articles"), docrepo.Options{
		Clock:           func() time.Time { return now },
		DefaultPageSize: 2,
		MaxPageSize:     3,
	})
	require.NoError(t, err)

	a := article{Title: "clocked"}
	require.NoError(t, r.Insert(ctx, &a))
	want := now.UTC().Truncate(time.Millisecond)
	assert.Equal(t, want, a.Created, "UTC, to the millisecond BSON keeps")
	assert.Equal(t, want, a.Updated)

	seed(t, r, article{}, article{}, article{})
	p, err := r.Page(ctx, docrepo.PageRequest{})
	require.NoError(t, err)
	assert.Len(t, p.Items, 2, "DefaultPageSize")
	_, err = r.Page(ctx, docrepo.PageRequest{Limit: 4})
	assert.ErrorIs(t, err, docrepo.ErrInvalid, "above MaxPageSize")
}
