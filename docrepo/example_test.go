package docrepo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/polystore/polystore/docrepo"
	"go.mongodb.org/mongo-driver/v2/bson"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Post is a document type: its _id is an ObjectID that Insert generates, and
// the repository maintains its version and timestamps.
type Post struct {
	ID      bson.ObjectID `bson:"_id"`
	Author  string        `bson:"author"`
	Title   string        `bson:"title"`
	Likes   int           `bson:"likes"`
	Tags    []string      `bson:"tags,omitempty"`
	Version int64         `bson:"version" docrepo:"version"`
	Created time.Time     `bson:"created" docrepo:"created"`
	Updated time.Time     `bson:"updated" docrepo:"updated"`
}

// Connect, make a repository, insert and read back. (Needs a server: set
// MONGODB_URL.)
func Example() {
	ctx := context.Background()
	client, err := docrepo.Connect(ctx, os.Getenv("MONGODB_URL"), docrepo.Config{MaxPoolSize: 20})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Disconnect(ctx)

	posts, err := docrepo.New[Post, bson.ObjectID](client.Database("blog").Collection("posts"), docrepo.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := posts.EnsureIndexes(ctx, docrepo.IndexSpec{
		Keys: []docrepo.IndexKey{{Field: "author"}, {Field: "created", Kind: docrepo.Descending}},
	}); err != nil {
		log.Fatal(err)
	}

	p := Post{Author: "ann", Title: "Hello"}
	if err := posts.Insert(ctx, &p); err != nil {
		log.Fatal(err)
	}
	got, err := posts.Get(ctx, p.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Title, got.Version)
}

// An id from a URL is parsed, never trusted.
func ExampleParseID() {
	_, err := docrepo.ParseID(`{"$gt": ""}`)
	fmt.Println(errors.Is(err, docrepo.ErrInvalidID))
	// Output: true
}

// Client input goes into filters as literals: an operator-shaped value is
// refused, and a field name is a plain name.
func ExampleEq() {
	f, _ := docrepo.And(docrepo.Eq("author", "ann"), docrepo.Gte("likes", 10)).BSON()
	b, _ := bson.MarshalExtJSON(f, false, false)
	fmt.Println(string(b))

	_, err := docrepo.Eq("author", bson.M{"$ne": nil}).BSON()
	fmt.Println(errors.Is(err, docrepo.ErrInvalid))
	_, err = docrepo.Eq("$where", "sleep(100)").BSON()
	fmt.Println(errors.Is(err, docrepo.ErrInvalid))
	// Output:
	// {"$and":[{"author":"ann"},{"likes":{"$gte":10}}]}
	// true
	// true
}

// Find with a filter, sort, limit and projection.
func ExampleRepository_Find() {
	ctx := context.Background()
	var posts *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New

	top, err := posts.Find(ctx, docrepo.Query{
		Filter: docrepo.And(docrepo.Eq("author", "ann"), docrepo.In("tags", "go", "db")),
		Sort:   []docrepo.SortField{docrepo.Desc("likes")},
		Limit:  10,
		Fields: []string{"title", "likes"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range top {
		fmt.Println(p.Title, p.Likes)
	}
}

// Replace succeeds only if nobody wrote the document since it was read.
func ExampleRepository_Replace() {
	ctx := context.Background()
	var posts *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New
	id, _ := docrepo.ParseID("65f1c0ffee0000000000beef")

	p, err := posts.Get(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	p.Title = "Edited"
	switch err := posts.Replace(ctx, &p); {
	case errors.Is(err, docrepo.ErrConflict):
		fmt.Println("someone else edited it first: reload and retry")
	case err != nil:
		log.Fatal(err)
	}
}

// Modify is the read-modify-write loop, retried on conflict.
func ExampleRepository_Modify() {
	ctx := context.Background()
	var posts *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New
	id, _ := docrepo.ParseID("65f1c0ffee0000000000beef")

	err := posts.Modify(ctx, id, func(p *Post) error {
		p.Tags = append(p.Tags, "featured")
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Update applies operators atomically, without reading first.
func ExampleRepository_Update() {
	ctx := context.Background()
	var posts *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New
	id, _ := docrepo.ParseID("65f1c0ffee0000000000beef")

	err := posts.Update(ctx, id, docrepo.NewUpdate().
		Inc("likes", 1).
		AddToSet("tags", "popular").
		PushSlice("recentLikers", -100, "bob"))
	if errors.Is(err, docrepo.ErrNotFound) {
		fmt.Println("no such post")
	}
}

// Page serves a feed with an opaque cursor that a client sends back.
func ExampleRepository_Page() {
	var posts *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New

	http.HandleFunc("GET /posts", func(w http.ResponseWriter, req *http.Request) {
		page, err := posts.Page(req.Context(), docrepo.PageRequest{
			Filter: docrepo.Eq("author", req.URL.Query().Get("author")),
			SortBy: "created",
			Desc:   true,
			Limit:  20,
			Cursor: req.URL.Query().Get("cursor"),
		})
		switch {
		case errors.Is(err, docrepo.ErrInvalid):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d posts, next=%s\n", len(page.Items), page.Next)
	})
}

// Aggregate decodes into a result type of its own.
func ExampleAggregate() {
	ctx := context.Background()
	var posts *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New

	type likesByAuthor struct {
		Author string `bson:"_id"`
		Likes  int    `bson:"likes"`
	}
	rows, err := docrepo.Aggregate[likesByAuthor](ctx, posts, docrepo.NewPipeline().
		Match(docrepo.Gte("created", time.Now().AddDate(0, -1, 0))).
		Group("author", docrepo.Sum("likes", "likes")).
		Sort(docrepo.Desc("likes")).
		Limit(10))
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rows {
		fmt.Println(r.Author, r.Likes)
	}
}

// InsertMany reports which documents failed and why.
func ExampleRepository_InsertMany() {
	ctx := context.Background()
	var posts *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New

	batch := []Post{{Title: "a"}, {Title: "b"}}
	err := posts.InsertMany(ctx, batch)
	var ime *docrepo.InsertManyError
	if errors.As(err, &ime) {
		for _, f := range ime.Failures {
			fmt.Printf("document %d: %v\n", f.Index, f.Err)
		}
	}
}

// WithTransaction needs a replica set or a sharded cluster.
func ExampleWithTransaction() {
	ctx := context.Background()
	var posts, archive *docrepo.Repository[Post, bson.ObjectID] // from docrepo.New, same client
	id, _ := docrepo.ParseID("65f1c0ffee0000000000beef")

	err := docrepo.WithTransaction(ctx, posts.Collection().Database().Client(), func(ctx context.Context) error {
		p, err := posts.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := archive.Insert(ctx, &p); err != nil {
			return err
		}
		return posts.Delete(ctx, id)
	})
	if errors.Is(err, docrepo.ErrTransactionsUnsupported) {
		fmt.Println("standalone server: archive without a transaction")
	}
}

// Traces and metrics: the application installs the OpenTelemetry SDK and
// hands its providers to Connect (pool metrics) and New (a span and a
// duration measurement per call). Leaving them nil uses the global ones.
// (Needs a server: set MONGODB_URL.)
func Example_observability() {
	ctx := context.Background()
	tp := sdktrace.NewTracerProvider() // with the exporter of your choice
	mp := sdkmetric.NewMeterProvider() // with a reader: Prometheus, OTLP ...
	defer tp.Shutdown(ctx)
	defer mp.Shutdown(ctx)

	// Config.Monitor takes otelmongo.NewMonitor(otelmongo.WithTracerProvider(tp))
	// for command spans under the repository's.
	client, err := docrepo.Connect(ctx, os.Getenv("MONGODB_URL"), docrepo.Config{MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Disconnect(ctx)
	posts, err := docrepo.New[Post, bson.ObjectID](client.Database("blog").Collection("posts"),
		docrepo.Options{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}

	ctx, span := tp.Tracer("blog").Start(ctx, "GET /posts/{id}")
	defer span.End()
	// A child span "docrepo.Get posts"; ErrNotFound gives it error.type not_found.
	_, err = posts.Get(ctx, bson.NewObjectID())
	fmt.Println(errors.Is(err, docrepo.ErrNotFound))
}
