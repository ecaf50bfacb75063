package pgrepo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

// Each benchmark has sub-benchmarks impl=polystore and impl=raw doing the
// same work on the same server in the same run. Besides ns/op (wall time,
// server included) each reports cpu-ns/op, the client process's CPU time
// per op. For

//
//	go test -run '^$' -bench . -benchmem -count 6 ./pgrepo/ > /tmp/pgrepo-bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl /tmp/pgrepo-bench.txt

type benchRow struct {
	ID        int64     `db:"id,pk,generated"`
	Email     string    `db:"email"`
	Name      string    `db:"name"`
	Balance   int64     `db:"balance"`
	Note      *string   `db:"note"`
	CreatedAt time.Time `db:"created_at,generated"`
	Version   int       `db:"version,version"`
}

const benchSchema = `CREATE TABLE bench_rows (
	id         bigserial PRIMARY KEY,
	email      text NOT NULL,
	name       text NOT NULL,
	balance    bigint NOT NULL,
	note       text,
	created_at timestamptz NOT NULL DEFAULT now(),
	version    integer NOT NULL
)`

func benchSetup(b *testing.B, rows int) (*pgxpool.Pool, *pgrepo.Repository[benchRow, int64]) {
	b.Helper()
	pool := servicetest.Postgres(b)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, benchSchema); err != nil {
		b.Fatal(err)
	}
	repo, err := pgrepo.New[benchRow, int64]("bench_rows")
	if err != nil {
		b.Fatal(err)
	}
	if rows > 0 {
		if _, err := repo.InsertMany(ctx, pool, benchRows(rows)); err != nil {
			b.Fatal(err)
		}
	}
	return pool, repo
}

func benchRows(n int) []benchRow {
	note := "a note"
	vs := make([]benchRow, n)
	for i := range vs {
		vs[i] = benchRow{Email: fmt.Sprintf("user%d@example.com", i), Name: fmt.Sprintf("User %d", i), Balance: int64(i), Note: &note}
	}
	return vs
}

func BenchmarkGet(b *testing.B) {
	pool, repo := benchSetup(b, 1000)
	ctx := context.Background()

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; b.Loop(); i++ {
			if _, err := repo.Get(ctx, pool, int64(i%1000+1)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		const q = `SELECT id, email, name, balance, note, created_at, version FROM bench_rows WHERE id = $1`
		for i := 0; b.Loop(); i++ {
			var r benchRow
			if err := pool.QueryRow(ctx, q, int64(i%1000+1)).Scan(&r.ID, &r.Email, &r.Name, &r.Balance, &r.Note, &r.CreatedAt, &r.Version); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkInsert(b *testing.B) {
	pool, repo := benchSetup(b, 0)
	ctx := context.Background()
	note := "a note"

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			r := benchRow{Email: "a@example.com", Name: "A", Balance: 1, Note: &note}
			if err := repo.Insert(ctx, pool, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		const q = `INSERT INTO bench_rows (email, name, balance, note, version) VALUES ($1, $2, $3, $4, 1) RETURNING id, created_at, version`
		for b.Loop() {
			r := benchRow{Email: "a@example.com", Name: "A", Balance: 1, Note: &note}
			if err := pool.QueryRow(ctx, q, r.Email, r.Name, r.Balance, r.Note).Scan(&r.ID, &r.CreatedAt, &r.Version); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkInsertMany loads 10,000 rows per op: with InsertMany (COPY),
// with raw CopyFrom, and with 10,000 single Insert calls.
func BenchmarkInsertMany(b *testing.B) {
	pool, repo := benchSetup(b, 0)
	ctx := context.Background()
	const n = 10000
	vs := benchRows(n)
	truncate := func(b *testing.B) {
		b.StopTimer()
		if _, err := pool.Exec(ctx, "TRUNCATE bench_rows"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			truncate(b)
			if _, err := repo.InsertMany(ctx, pool, vs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		cols := []string{"email", "name", "balance", "note", "version"}
		for b.Loop() {
			truncate(b)
			src := pgx.CopyFromSlice(len(vs), func(i int) ([]any, error) {
				r := &vs[i]
				return []any{r.Email, r.Name, r.Balance, r.Note, 1}, nil
			})
			if _, err := pool.CopyFrom(ctx, pgx.Identifier{"bench_rows"}, cols, src); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=single-inserts", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			truncate(b)
			for i := range vs {
				r := vs[i]
				if err := repo.Insert(ctx, pool, &r); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkList reads 100 rows in key order.
func BenchmarkList(b *testing.B) {
	pool, repo := benchSetup(b, 100)
	ctx := context.Background()

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			page, err := repo.List(ctx, pool, pgrepo.Query{})
			if err != nil || len(page.Items) != 100 {
				b.Fatal(len(page.Items), err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		const q = `SELECT id, email, name, balance, note, created_at, version FROM bench_rows ORDER BY id`
		for b.Loop() {
			rows, err := pool.Query(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			items, err := pgx.CollectRows(rows, pgx.RowToStructByName[benchRow])
			if err != nil || len(items) != 100 {
				b.Fatal(len(items), err)
			}
		}
	})
}
