package coord_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/coord"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Registration is the state the steps of the register-user saga share; it
// is stored as JSON in the saga's log record.
type Registration struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// registerUser defines the saga that registers a user: a row in PostgreSQL,
// a welcome conversation in MongoDB, the activation of the user (the pivot:
// from there the saga only goes forward) and the cached profile in Redis.
func registerUser(convs *mongo.Collection, rdb *redis.Client) *coord.Definition[Registration] {
	return coord.Define("register-user",
		coord.Step[Registration]{
			Name: "create-user",
			// In the coordinator's transaction: the row and the log record
			// commit together.
			TxAction: func(ctx context.Context, tx coord.Tx, r *Registration) error {
				_, err := tx.Exec(ctx, `insert into users (id, email) values ($1, $2)`, r.UserID, r.Email)
				return err
			},
			TxCompensate: func(ctx context.Context, tx coord.Tx, r *Registration) error {
				_, err := tx.Exec(ctx, `delete from users where id = $1`, r.UserID)
				return err
			},
		},
		coord.Step[Registration]{
			Name: "welcome-conversation",
			// A deterministic _id and the barrier helpers make replays and
			// late compensations harmless.
			Action: func(ctx context.Context, r *Registration) error {
				_, err := coord.MongoInsert(ctx, convs, bson.D{{Key: "_id", Value: r.UserID}, {Key: "title", Value: "Welcome!"}})
				return err
			},
			Compensate: func(ctx context.Context, r *Registration) error {
				_, err := coord.MongoDelete(ctx, convs, r.UserID)
				return err
			},
			Retry:   coord.RetryPolicy{Attempts: 5, Backoff: 50 * time.Millisecond},
			Timeout: 2 * time.Second,
		},
		coord.Step[Registration]{
			Name: "activate-user",
			Kind: coord.Pivot,
			TxAction: func(ctx context.Context, tx coord.Tx, r *Registration) error {
				_, err := tx.Exec(ctx, `update users set active = true where id = $1`, r.UserID)
				return err
			},
		},
		coord.Step[Registration]{
			Name: "cache-profile",
			Kind: coord.Retriable,
			Action: func(ctx context.Context, r *Registration) error {
				_, err := coord.RedisSet(ctx, rdb, "profile:"+r.UserID, r.Email, time.Hour)
				return err
			},
		},
	)
}

// The user-registration saga over PostgreSQL, MongoDB and Redis, with
// recovery running in the background.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("POSTGRES_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	mc, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("MONGODB_URL")))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = mc.Disconnect(ctx) }()
	ropts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()

	// New creates the coordinator's tables if needed.
	c, err := coord.New(ctx, pool, coord.Options{Hooks: coord.SlogHooks(slog.Default())})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	register, err := coord.Register(c, registerUser(mc.Database("app").Collection("conversations"), rdb))
	if err != nil {
		log.Fatal(err)
	}
	// Finish the sagas of instances that died, now and every 10s.
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}

	// The saga id makes Run idempotent: a retried request gets the outcome
	// of the first one.
	r := Registration{UserID: "u-42", Email: "ada@example.com"}
	info, err := register.Run(ctx, "register:"+r.Email, &r)
	switch {
	case err == nil:
		fmt.Println("registered", r.UserID)
	case errors.Is(err, coord.ErrCompensated):
		fmt.Println("not registered, everything undone:", err)
	case errors.Is(err, coord.ErrFailed):
		fmt.Println("needs a person:", info.StepName, info.Error)
	case errors.Is(err, coord.ErrIncomplete):
		fmt.Println("accepted, in the log; recovery will finish it:", err)
	case errors.Is(err, coord.ErrNotStarted):
		fmt.Println("nothing done, nothing logged; safe to try again:", err)
	case errors.Is(err, coord.ErrOutcomeUnknown):
		fmt.Println("unknown: run again with the same id to learn the outcome:", err)
	default:
		log.Fatal(err)
	}
}

// Failed lists the sagas whose compensation kept failing.
func ExampleCoordinator_Failed() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("POSTGRES_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	c, err := coord.New(ctx, pool, coord.Options{})
	if err != nil {
		log.Fatal(err)
	}
	failed, err := c.Failed(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range failed {
		fmt.Printf("%s (%s) stuck compensating %s: %s\n", s.ID, s.Name, s.StepName, s.Error)
	}
}

// Parallel runs the MongoDB insert and the Redis set of a registration
// concurrently, after the pivot that creates the user: one log record
// before them, one after both. Each member writes its own store and reads
// the state only, as members must (they share *S).
func ExampleParallel() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("POSTGRES_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	mc, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("MONGODB_URL")))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = mc.Disconnect(ctx) }()
	convs := mc.Database("app").Collection("conversations")
	ropts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()

	c, err := coord.New(ctx, pool, coord.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	register, err := coord.Register(c, coord.Define("register-fast",
		coord.Step[Registration]{
			Name: "user",
			Kind: coord.Pivot,
			TxAction: func(ctx context.Context, tx coord.Tx, r *Registration) error {
				_, err := tx.Exec(ctx, `insert into users (id, email) values ($1, $2)`, r.UserID, r.Email)
				return err
			},
		},
		// After the pivot: retriable members, retried (by recovery too)
		// until both have succeeded; a crash between them runs both again,
		// and their barriers make the replay take effect once.
		coord.Parallel("notify",
			coord.Step[Registration]{
				Name: "conversation",
				Kind: coord.Retriable,
				Action: func(ctx context.Context, r *Registration) error {
					_, err := coord.MongoInsert(ctx, convs, bson.D{{Key: "_id", Value: r.UserID}, {Key: "title", Value: "Welcome!"}})
					return err
				},
				Timeout: 2 * time.Second,
			},
			coord.Step[Registration]{
				Name: "cache",
				Kind: coord.Retriable,
				Action: func(ctx context.Context, r *Registration) error {
					_, err := coord.RedisSet(ctx, rdb, "profile:"+r.UserID, r.Email, time.Hour)
					return err
				},
				Retry: coord.RetryPolicy{Attempts: 5},
			},
		),
	))
	if err != nil {
		log.Fatal(err)
	}
	r := Registration{UserID: "u-43", Email: "grace@example.com"}
	info, err := register.Run(ctx, "register:"+r.Email, &r)
	switch {
	case err == nil:
		fmt.Println("registered", r.UserID)
	case errors.Is(err, coord.ErrIncomplete):
		// A member failed its tries: recovery runs the group again.
		fmt.Println("registered; recovery finishes", info.StepName, info.Error)
	default:
		log.Fatal(err)
	}
}

// ExecAtCommit queues the writes of a step that needs none of their
// results: they travel with BEGIN, the saga's log record and COMMIT, so
// the step costs one round trip. An error of one fails the step's try, as
// an error the step returned would.
func ExampleExecAtCommit() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("POSTGRES_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	c, err := coord.New(ctx, pool, coord.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	signUp, err := coord.Register(c, coord.Define("sign-up",
		coord.Step[Registration]{
			Name: "user",
			Kind: coord.Pivot,
			TxAction: func(ctx context.Context, tx coord.Tx, r *Registration) error {
				if err := coord.ExecAtCommit(ctx, tx, `insert into users (id, email) values ($1, $2)`, r.UserID, r.Email); err != nil {
					return err
				}
				return coord.ExecAtCommit(ctx, tx, `insert into audit (user_id, event) values ($1, 'signed up')`, r.UserID)
			},
		},
	))
	if err != nil {
		log.Fatal(err)
	}
	r := Registration{UserID: "u-44", Email: "ada@example.com"}
	if _, err := signUp.Run(ctx, "sign-up:"+r.Email, &r); err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed up", r.UserID)
}
