package server_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/pgrepo"
)

// ExampleNew wires the service on clients opened with each package's
// helper: the server never opens or closes them itself. It needs the three
// servers, so it has no Output line.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	server.FailFastRedis(opts)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	mc, err := docrepo.Connect(ctx, os.Getenv("MONGODB_URL"), docrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer mc.Disconnect(ctx)

	srv, err := server.New(ctx, server.Stores{Postgres: pool, Redis: rdb, Mongo: mc.Database("polystore_example")}, server.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil { // the saga recovery loop
		log.Fatal(err)
	}
	defer srv.Close()
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", srv.Handler()))
}
