package docrepo_test

import (
	"context"
	"testing"
	"time"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// article is a document with every field the repository maintains.
type article struct {
	ID      bson.ObjectID `bson:"_id"`
	Title   string        `bson:"title"`
	Author  string        `bson:"author"`
	Views   int           `bson:"views"`
	Tags    []string      `bson:"tags,omitempty"`
	Version int64         `bson:"version" docrepo:"version"`
	Created time.Time     `bson:"created" docrepo:"created"`
	Updated time.Time     `bson:"updated" docrepo:"updated"`
}

// account has a caller-chosen string id and nothing maintained.
type account struct {
	Email string `bson:"_id"`
	Name  string `bson:"name"`
}

func articles(t *testing.T) (*docrepo.Repository[article, bson.ObjectID], *mongo.Database) {
	t.Helper()
	db := servicetest.Mongo(t)
	r, err := docrepo.New[article, bson.ObjectID](db.Collection("articles"), docrepo.Options{})
	require.NoError(t, err)
	return r, db
}

func accounts(t *testing.T) *docrepo.Repository[account, string] {
	t.Helper()
	r, err := docrepo.New[account, string](servicetest.Mongo(t).Collection("accounts"), docrepo.Options{})
	require.NoError(t, err)
	return r
}

// isFerretDB reports whether the server is FerretDB, which lacks some
// MongoDB features; tests that depend on them say so when they skip.
func isFerretDB(t *testing.T, db *mongo.Database) bool {
	t.Helper()
	var info bson.M
	require.NoError(t, db.Client().Database("admin").RunCommand(context.Background(), bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info))
	_, ok := info["ferretdbVersion"]
	return ok
}

func seed(t *testing.T, r *docrepo.Repository[article, bson.ObjectID], docs ...article) []article {
	t.Helper()
	require.NoError(t, r.InsertMany(context.Background(), docs))
	return docs
}
