// Package pgrepo provides typed PostgreSQL repositories on pgx/v5: one
// generic repository per table, described once from struct tags, with
// optimistic locking, soft deletes, typed query predicates, keyset
// pagination, retried transactions and errors that callers match with
// errors.Is instead of SQLSTATE strings.
//
// # Repositories
//
// New describes a table from the db tags of a struct, once:
//
//	type User struct {
//		ID        int64      `db:"id,pk,generated"`
//		Email     string     `db:"email"`
//		CreatedAt time.Time  `db:"created_at,generated"`
//		Version   int        `db:"version,version"`
//		DeletedAt *time.Time `db:"deleted_at,softdelete"`
//	}
//	users, err := pgrepo.New[User, int64]("users")
//
// A composite primary key is a pk tag on several fields, with a struct of
// the key's columns as ID (see New).
//
// Its SQL is built then, every identifier quoted with pgx.Identifier;
// values only ever travel as bind parameters. The tags are the ones
// pgx.RowToStructByName reads, so the same struct works with plain pgx.
//
// Every method takes a DB first after the context: a *pgxpool.Pool, a
// *pgx.Conn or a pgx.Tx, so that repositories join the caller's
// transaction. Get, Exists, Insert, InsertMany (COPY), Update (checked
// against the version column), Patch, PatchVersion (Patch checked against
// the version column), Delete (soft where the table has a
// softdelete column), Upsert, Count and List cover CRUD.
//
// # Queries
//
// List takes a Query: a Predicate built from Eq, Ne, Lt, Le, Gt, Ge, In,
// Like, ILike, IsNull, IsNotNull, And, Or and Not; an ordering; and either
// Limit/Offset or keyset pagination through the opaque Page.Next cursor,
// which neither skips nor repeats rows when rows are inserted between
// pages. A column name the table description does not have is rejected
// with ErrInvalidColumn before any SQL is built.
//
// # Errors
//
// Methods return errors that wrap ErrNotFound, ErrConflict, ErrDuplicate
// (SQLSTATE 23505; the message names the constraint), ErrForeignKey
// (23503), ErrCheck (23514), ErrNotNull (23502), ErrInvalidValue (22P02,
// 22003, 22001 and the rest of class 22, or a value pgx cannot encode),
// ErrInvalidColumn, ErrInvalidCursor or ErrInvalid; the driver's
// *pgconn.PgError stays reachable with errors.As. ErrNotNull,
// ErrInvalidValue, ErrInvalidColumn and ErrInvalidCursor are all also
// ErrInvalid, so a service maps every bad-input error with one check.
//
// ErrNotFound's dynamic type has a method NotFound() bool that returns
// true. Packages that must not import pgrepo (polystore's cacherepo, for
// one) recognise a missing row through that behaviour:
//
//	var nf interface{ NotFound() bool }
//	if errors.As(err, &nf) && nf.NotFound() { ... }
//
// # Transactions
//
// InTx runs a function in a transaction, commits or rolls back (also on
// panic), and runs it again after a serialization failure (40001) or a
// deadlock (40P01), with bounded exponential backoff and jitter.
//
// # Pool and schema
//
// Open builds a *pgxpool.Pool from a URL and a Config whose zero value is
// a sensible default, and pings the server before returning.
//
// # Observability
//
// Every repository call has an OpenTelemetry span "pgrepo.<Method> <table>"
// (kind Client; db.system.name postgresql, db.collection.name the table,
// db.operation.name the method's name, rows returned or affected, and on
// failure status Error, error.type naming the sentinel class and
// db.response.status_code the SQLSTATE) and a measurement in the
// db.client.operation.duration histogram. InTx has a span "pgrepo.InTx"
// with an event per retry. The providers are the global ones unless
// NewWithOptions (Options) or TxOptions give others; with none installed a
// call costs no allocation. pgrepo imports the OpenTelemetry API only.
//
// pgrepo starts no span per statement: install a pgx QueryTracer for that,
// otelpgx.NewTracer() from github.com/exaring/otelpgx, through
// Config.Tracer (or pgxpool.Config.ConnConfig.Tracer on a pool you build),
// and its statement spans become children of the repository call's span.
// PoolMetrics reports pool.Stat() as db.client.connection.* and
// polystore.pool.* metrics.
//
// Migrate applies numbered .sql migrations from an fs.FS (an embed.FS)
// with github.com/jackc/tern/v2/migrate, under a PostgreSQL advisory lock,
// so that every instance of a service may run it at start-up.
package pgrepo
