package docrepo_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Each benchmark runs the repository (impl=polystore) and the raw driver
// doing the same work (impl=raw) in the same run, against the same server:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./docrepo/ > /tmp/docrepo-bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl /tmp/docrepo-bench.txt

func benchRepo(b *testing.B) (*docrepo.Repository[article, bson.ObjectID], *mongo.Collection) {
	b.Helper()
	coll := servicetest.Mongo(b).Collection("bench")
	r, err := docrepo.New[article, bson.ObjectID](coll, docrepo.Options{})
	require.NoError(b, err)
	return r, coll
}

func benchDocs(n int, author string) []article {
	docs := make([]article, n)
	for i := range docs {
		docs[i] = article{Title: fmt.Sprintf("article %d", i), Author: author, Views: i, Tags: []string{"a", "b"}}
	}
	return docs
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	r, coll := benchRepo(b)
	docs := benchDocs(1000, "ann")
	require.NoError(b, r.InsertMany(ctx, docs))

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := r.Get(ctx, docs[i%len(docs)].ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var a article
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: docs[i%len(docs)].ID}}).Decode(&a); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkFind100(b *testing.B) {
	ctx := context.Background()
	r, coll := benchRepo(b)
	require.NoError(b, r.InsertMany(ctx, benchDocs(100, "ann")))
	require.NoError(b, r.InsertMany(ctx, benchDocs(100, "bob")))

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, err := r.Find(ctx, docrepo.Query{Filter: docrepo.Eq("author", "ann")})
			if err != nil || len(got) != 100 {
				b.Fatal(len(got), err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cur, err := coll.Find(ctx, bson.D{{Key: "author", Value: "ann"}})
			if err != nil {
				b.Fatal(err)
			}
			var got []article
			if err := cur.All(ctx, &got); err != nil || len(got) != 100 {
				b.Fatal(len(got), err)
			}
		}
	})
}

// BenchmarkInsert10000 compares InsertMany of 10,000 documents with the
// 10,000 single inserts it replaces (and with the raw driver's InsertMany).
func BenchmarkInsert10000(b *testing.B) {
	ctx := context.Background()
	r, coll := benchRepo(b)
	const n = 10000
	reset := func(b *testing.B) []article {
		b.StopTimer()
		defer b.StartTimer()
		if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
			b.Fatal(err)
		}
		return benchDocs(n, "ann")
	}

	b.Run("impl=polystore-many", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			docs := reset(b)
			if err := r.InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw-single", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			docs := reset(b)
			for i := range docs {
				docs[i].ID = bson.NewObjectID()
				if _, err := coll.InsertOne(ctx, &docs[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("impl=raw-many", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			docs := reset(b)
			batch := make([]any, len(docs))
			for i := range docs {
				docs[i].ID = bson.NewObjectID()
				batch[i] = &docs[i]
			}
			if _, err := coll.InsertMany(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
	})
}
