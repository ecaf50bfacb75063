package pgrepo_test

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/polystore/polystore/pgrepo"
)

// User is a row of the users table.
type User struct {
	ID        int64      `db:"id,pk,generated"`
	Email     string     `db:"email"`
	Name      string     `db:"name"`
	CreatedAt time.Time  `db:"created_at,generated"`
	Version   int        `db:"version,version"`
	DeletedAt *time.Time `db:"deleted_at,softdelete"`
}

// The migrations would normally sit next to the code that embeds them:
//
//	//go:embed migrations/*.sql
var exampleMigrations embed.FS

func Example() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	users, err := pgrepo.New[User, int64]("users")
	if err != nil {
		log.Fatal(err) // a struct that does not describe a table: a programming error
	}

	u := User{Email: "ada@example.com", Name: "Ada"}
	if err := users.Insert(ctx, pool, &u); errors.Is(err, pgrepo.ErrDuplicate) {
		log.Fatal("email taken")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.ID, u.CreatedAt, u.Version) // filled back by INSERT ... RETURNING

	u.Name = "Ada Lovelace"
	if err := users.Update(ctx, pool, &u); errors.Is(err, pgrepo.ErrConflict) {
		log.Fatal("someone else changed the user first: read it again")
	}

	got, err := users.Get(ctx, pool, u.ID)
	if errors.Is(err, pgrepo.ErrNotFound) {
		log.Fatal("no such user")
	}
	fmt.Println(got.Name)
}

func ExampleOpen() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, "postgres://app@localhost:5432/app", pgrepo.Config{
		MaxConns:       20,
		ConnectTimeout: 3 * time.Second,
		// Tracer: otelpgx.NewTracer(), // OpenTelemetry spans for every query
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
}

func ExampleMigrate() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// Migrate reads the root of the file system: step into the directory.
	dir, err := fs.Sub(exampleMigrations, "migrations")
	if err != nil {
		log.Fatal(err)
	}
	// Safe when every instance of the service does it at start-up.
	if err := pgrepo.Migrate(ctx, pool, dir); err != nil {
		log.Fatal(err)
	}
}

func ExampleRepository_List() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	users, err := pgrepo.New[User, int64]("users")
	if err != nil {
		log.Fatal(err)
	}

	q := pgrepo.Query{
		Where: pgrepo.And(
			pgrepo.ILike("email", "%@example.com"),
			pgrepo.Or(pgrepo.Gt("created_at", time.Now().AddDate(0, -1, 0)), pgrepo.In("name", "Ada", "Grace")),
		),
		OrderBy: []pgrepo.Order{pgrepo.Desc("created_at")},
		Limit:   50,
	}
	for {
		page, err := users.List(ctx, pool, q)
		if err != nil {
			log.Fatal(err)
		}
		for _, u := range page.Items {
			fmt.Println(u.Email)
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next // keyset: no row skipped or repeated when rows are added meanwhile
	}
}

func ExampleRepository_Patch() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	users, err := pgrepo.New[User, int64]("users")
	if err != nil {
		log.Fatal(err)
	}

	u, err := users.Patch(ctx, pool, 42, map[string]any{"name": "Grace"})
	if errors.Is(err, pgrepo.ErrInvalidColumn) {
		log.Fatal(err) // a column users does not have, or may not be written
	}
	fmt.Println(u.Name, u.Version)
}

// PatchVersion changes only what the client sent, and only if nobody
// changed the row since the client read it (an HTTP PATCH with If-Match).
func ExampleRepository_PatchVersion() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	users, err := pgrepo.New[User, int64]("users")
	if err != nil {
		log.Fatal(err)
	}

	u, err := users.PatchVersion(ctx, pool, 42, 3, map[string]any{"name": "Grace"})
	switch {
	case errors.Is(err, pgrepo.ErrConflict):
		log.Fatal("changed since version 3: read it again") // 412 Precondition Failed
	case errors.Is(err, pgrepo.ErrNotFound):
		log.Fatal("no user 42") // 404
	case errors.Is(err, pgrepo.ErrInvalid):
		log.Fatal(err) // 400: an unknown column, NULL for a NOT NULL one, "x" for an integer
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println(u.Name, u.Version) // Grace 4
}

// OrderLine has a composite primary key (order_id, line_no).
type OrderLine struct {
	OrderID int64  `db:"order_id,pk"`
	LineNo  int32  `db:"line_no,pk"`
	Item    string `db:"item"`
}

// OrderLineKey is OrderLine's ID: its fields are the key columns, in the
// order of OrderLine's pk fields.
type OrderLineKey struct {
	OrderID int64
	LineNo  int32
}

func ExampleNew_compositeKey() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	lines, err := pgrepo.New[OrderLine, OrderLineKey]("order_lines")
	if err != nil {
		log.Fatal(err) // also when OrderLineKey does not match the key
	}

	if err := lines.Insert(ctx, pool, &OrderLine{OrderID: 7, LineNo: 1, Item: "tea"}); err != nil {
		log.Fatal(err)
	}
	l, err := lines.Get(ctx, pool, OrderLineKey{OrderID: 7, LineNo: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Item)
}

func ExampleInTx() {
	ctx := context.Background()
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	users, err := pgrepo.New[User, int64]("users")
	if err != nil {
		log.Fatal(err)
	}

	// Run again from the start if PostgreSQL reports a serialization
	// failure or a deadlock; commit when the function returns nil.
	err = pgrepo.InTx(ctx, pool, pgrepo.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
		n, err := users.Count(ctx, tx, pgrepo.Eq("name", "Ada"))
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		return users.Insert(ctx, tx, &User{Email: "ada@example.com", Name: "Ada"})
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A service's own providers, for the repository's spans and metrics and for
// the pool's statistics; with pgxpool.Config.ConnConfig.Tracer set to
// otelpgx.NewTracer() the statements' spans would go under the calls' spans.
func ExampleNewWithOptions() {
	ctx := context.Background()
	tp := tracenoop.NewTracerProvider() // the application's SDK provider
	mp := metricnoop.NewMeterProvider() // idem
	pool, err := pgrepo.Open(ctx, os.Getenv("POSTGRES_URL"), pgrepo.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	unregister, err := pgrepo.PoolMetrics(pool, mp)
	if err != nil {
		log.Fatal(err)
	}
	defer unregister()

	users, err := pgrepo.NewWithOptions[User, int64]("users", pgrepo.Options{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}
	_, err = users.Get(ctx, pool, 1) // span "pgrepo.Get users"
	if err != nil && !errors.Is(err, pgrepo.ErrNotFound) {
		log.Fatal(err)
	}
}
