package servicetest

import (
	"context"
	"sync"
	"testing"

	tcmongodb "github.com/testcontainers/testcontainers-go/modules/mongodb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

var mongoStore = &store{
	name:   "MongoDB-compatible",
	envVar: "MONGODB_URL",
	ping: func(ctx context.Context, url string) error {
		c, err := mongo.Connect(options.Client().ApplyURI(url))
		if err != nil {
			return err
		}
		defer c.Disconnect(context.Background())
		return c.Ping(ctx, nil)
	},
	start: func(ctx context.Context) (string, error) {
		// A one-node replica set, so that transactions can be tested too.
		c, err := tcmongodb.Run(ctx, "mongo:7", tcmongodb.WithReplicaSet("rs0"))
		if err != nil {
			return "", err
		}
		return c.ConnectionString(ctx)
	},
}

var (
	mongoClientOnce sync.Once
	mongoClient     *mongo.Client
	mongoClientErr  error
)

// MongoURL returns the URL of the resolved MongoDB-compatible server. Tests
// that connect with it must use databases of their own (see Mongo).
func MongoURL(tb testing.TB) string {
	tb.Helper()
	return mongoStore.resolve(tb)
}

// Mongo returns a new, empty database on the resolved MongoDB-compatible
// server that is dropped when the test ends. Its client is shared by all
// the tests of the binary: do not disconnect it.
func Mongo(tb testing.TB) *mongo.Database {
	tb.Helper()
	url := MongoURL(tb)
	mongoClientOnce.Do(func() {
		mongoClient, mongoClientErr = mongo.Connect(options.Client().ApplyURI(url))
	})
	if mongoClientErr != nil {
		tb.Fatalf("servicetest: connecting to %s: %v", url, mongoClientErr)
	}

	// MongoDB limits database names to 63 bytes; FerretDB's SQLite backend
	// turns each into a file name.
	db := mongoClient.Database(uniqueName("polystore_test_"))
	tb.Cleanup(func() {
		ctx, cancel := cleanupContext()
		defer cancel()
		if err := db.Drop(ctx); err != nil {
			tb.Errorf("servicetest: dropping database %s: %v", db.Name(), err)
		}
	})
	return db
}
