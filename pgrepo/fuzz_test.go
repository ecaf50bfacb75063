package pgrepo_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/polystore/polystore/pgrepo"
)

// recorder is a DB that keeps the SQL and arguments it is given and runs
// nothing: the fuzz tests look at what would reach the server. (The
// integration tests run the same statements against PostgreSQL.)
type recorder struct {
	sql  []string
	args [][]any
}

var errRecorded = errors.New("recorded, not run")

func (r *recorder) record(sql string, args []any) {
	r.sql = append(r.sql, sql)
	r.args = append(r.args, args)
}

func (r *recorder) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	r.record(sql, args)
	return pgconn.CommandTag{}, errRecorded
}

func (r *recorder) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	r.record(sql, args)
	return nil, errRecorded
}

func (r *recorder) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	r.record(sql, args)
	return errRow{}
}

func (r *recorder) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, errRecorded
}

type errRow struct{}

func (errRow) Scan(...any) error { return errRecorded }

// zeroRowsDB answers every query with n rows of zero values: enough for
// List to make a real cursor without a server.
type zeroRowsDB struct {
	recorder
	n int
}

func (d *zeroRowsDB) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return &zeroRows{n: d.n}, nil
}

type zeroRows struct {
	pgx.Rows // only the methods below are called
	n        int
}

func (r *zeroRows) Next() bool        { r.n--; return r.n >= 0 }
func (r *zeroRows) Scan(...any) error { return nil }
func (r *zeroRows) Err() error        { return nil }
func (r *zeroRows) Close()            {}

var (
	// The only identifiers that may reach SQL: the table's, quoted.
	knownIdentifiers = []string{`"accounts"`, `"id"`, `"email"`, `"name"`, `"balance"`, `"team_id"`, `"note"`,
		`"created_at"`, `"name_upper"`, `"version"`, `"deleted_at"`}
	placeholder = regexp.MustCompile(`\$[0-9]+`)
	sqlToken    = regexp.MustCompile(`^(\s+|[A-Za-z_]+|[0-9]+|<=|>=|<>|[(),=<>+.*])`)
	keywords    = map[string]bool{
		"SELECT": true, "FROM": true, "WHERE": true, "AND": true, "OR": true, "NOT": true, "IN": true,
		"LIKE": true, "ILIKE": true, "IS": true, "NULL": true, "ORDER": true, "BY": true, "ASC": true,
		"DESC": true, "LIMIT": true, "OFFSET": true, "TRUE": true, "FALSE": true, "count": true,
		"UPDATE": true, "SET": true, "RETURNING": true, "1": true,
		"INSERT": true, "INTO": true, "VALUES": true, "ON": true, "CONFLICT": true, "DO": true, "EXCLUDED": true,
	}
)

// checkSQL fails unless sql is made only of the known quoted identifiers,
// bind placeholders, keywords and operators: no trace of caller input.
func checkSQL(t *testing.T, sql string) {
	t.Helper()
	rest := sql
	for _, id := range knownIdentifiers {
		rest = strings.ReplaceAll(rest, id, " ")
	}
	rest = placeholder.ReplaceAllString(rest, " ")
	for rest != "" {
		tok := sqlToken.FindString(rest)
		if tok == "" {
			t.Fatalf("unexpected text %q in SQL %q", rest, sql)
		}
		word := strings.TrimSpace(tok)
		if word != "" && (word[0] >= 'A' && word[0] <= 'z' || word[0] >= '0' && word[0] <= '9') && !keywords[word] {
			t.Fatalf("unexpected word %q in SQL %q", word, sql)
		}
		rest = rest[len(tok):]
	}
}

func hasArg(args []any, v string) bool {
	return slices.ContainsFunc(args, func(a any) bool { s, ok := a.(string); return ok && s == v })
}

// predicate builds the op-th kind of predicate on col with value.
func predicate(op uint8, col, value string) (p pgrepo.Predicate, usesValue bool) {
	switch op % 13 {
	case 0:
		return pgrepo.Eq(col, value), true
	case 1:
		return pgrepo.Ne(col, value), true
	case 2:
		return pgrepo.Lt(col, value), true
	case 3:
		return pgrepo.Le(col, value), true
	case 4:
		return pgrepo.Gt(col, value), true
	case 5:
		return pgrepo.Ge(col, value), true
	case 6:
		return pgrepo.In(col, value, value+"'"), true
	case 7:
		return pgrepo.Like(col, value), true
	case 8:
		return pgrepo.ILike(col, value), true
	case 9:
		return pgrepo.IsNull(col), false
	case 10:
		return pgrepo.Not(pgrepo.IsNotNull(col)), false
	case 11:
		return pgrepo.And(pgrepo.Eq("name", "fixed"), pgrepo.Or(pgrepo.Eq(col, value))), true
	default:
		return pgrepo.Or(pgrepo.IsNull("note"), pgrepo.Not(pgrepo.ILike(col, value))), true
	}
}

// FuzzQuery feeds hostile column names, sort keys and values to List,
// Count, Upsert (as conflict columns), Patch and PatchVersion. Unknown names must be rejected with ErrInvalidColumn
// before any SQL is produced; otherwise the SQL must hold nothing but known
// identifiers, placeholders and keywords, with every value in the
// arguments. `go test` runs the seed corpus; `go test -fuzz FuzzQuery`
// explores further.
func FuzzQuery(f *testing.F) {
	seeds := []struct {
		col, sortKey, value string
		op                  uint8
		desc                bool
	}{
		{"name", "email", "Ada", 0, false},
		{"balance", "balance", "10", 4, true},
		{"note", "created_at", "x", 9, false},
		{`name" = '' OR 1=1; --`, "name", "v", 0, false},
		{"name", `name"; DROP TABLE accounts; --`, "v", 7, true},
		{"name", "id", `'); DROP TABLE accounts; --`, 7, false},
		{"name", "id", `$1`, 6, false},
		{"name", "id", `" OR "1"="1`, 11, false},
		{"NAME", "Id", "v", 1, false},
		{"name ", "id", "v", 2, false},
		{"", "", "", 3, false},
		{"name\x00", "id", "\x00", 5, false},
		{"scratch", "id", "v", 12, false},
		{"accounts.name", "id", "v", 0, false},
		{"version", "deleted_at", "1; SELECT pg_sleep(10)", 8, true},
		{"email", "name_upper", "%_\\", 10, false},
	}
	for _, s := range seeds {
		f.Add(s.col, s.sortKey, s.value, s.op, s.desc)
	}

	repo, err := pgrepo.New[account, int64]("accounts")
	if err != nil {
		f.Fatal(err)
	}
	known := map[string]bool{}
	for _, id := range knownIdentifiers[1:] {
		known[strings.Trim(id, `"`)] = true
	}
	writable := map[string]bool{"email": true, "name": true, "balance": true, "team_id": true, "note": true}

	f.Fuzz(func(t *testing.T, col, sortKey, value string, op uint8, desc bool) {
		ctx := context.Background()
		p, usesValue := predicate(op, col, value)

		rec := &recorder{}
		_, err := repo.List(ctx, rec, pgrepo.Query{Where: p, OrderBy: []pgrepo.Order{{Column: sortKey, Desc: desc}}, Limit: 10})
		if !known[col] || !known[sortKey] {
			if !errors.Is(err, pgrepo.ErrInvalidColumn) {
				t.Fatalf("List with column %q, sort key %q: got %v, want ErrInvalidColumn", col, sortKey, err)
			}
			if len(rec.sql) != 0 {
				t.Fatalf("List produced SQL for an unknown column: %q", rec.sql)
			}
		} else {
			if !errors.Is(err, errRecorded) {
				t.Fatalf("List: %v", err)
			}
			checkSQL(t, rec.sql[0])
			if usesValue && !hasArg(rec.args[0], value) {
				t.Fatalf("value %q is not among the arguments %v", value, rec.args[0])
			}
		}

		rec = &recorder{}
		_, err = repo.Count(ctx, rec, p)
		if !known[col] {
			if !errors.Is(err, pgrepo.ErrInvalidColumn) || len(rec.sql) != 0 {
				t.Fatalf("Count with column %q: got %v and SQL %q", col, err, rec.sql)
			}
		} else {
			checkSQL(t, rec.sql[0])
		}

		rec = &recorder{}
		err = repo.Upsert(ctx, rec, &account{Email: value, Name: value}, col, sortKey)
		if !known[col] || !known[sortKey] {
			if !errors.Is(err, pgrepo.ErrInvalidColumn) || len(rec.sql) != 0 {
				t.Fatalf("Upsert on columns %q, %q: got %v and SQL %q", col, sortKey, err, rec.sql)
			}
		} else if col == sortKey {
			if !errors.Is(err, pgrepo.ErrInvalid) || len(rec.sql) != 0 {
				t.Fatalf("Upsert on column %q twice: got %v and SQL %q", col, err, rec.sql)
			}
		} else {
			checkSQL(t, rec.sql[0])
			if !hasArg(rec.args[0], value) {
				t.Fatalf("value %q is not among the arguments %v", value, rec.args[0])
			}
		}

		rec = &recorder{}
		_, err = repo.Patch(ctx, rec, 1, map[string]any{col: value})
		if !writable[col] {
			if !errors.Is(err, pgrepo.ErrInvalidColumn) || len(rec.sql) != 0 {
				t.Fatalf("Patch of column %q: got %v and SQL %q", col, err, rec.sql)
			}
		} else {
			checkSQL(t, rec.sql[0])
			if !hasArg(rec.args[0], value) {
				t.Fatalf("patched value %q is not among the arguments %v", value, rec.args[0])
			}
		}

		rec = &recorder{}
		_, err = repo.PatchVersion(ctx, rec, 1, 3, map[string]any{col: value})
		if !writable[col] {
			if !errors.Is(err, pgrepo.ErrInvalidColumn) || len(rec.sql) != 0 {
				t.Fatalf("PatchVersion of column %q: got %v and SQL %q", col, err, rec.sql)
			}
		} else {
			checkSQL(t, rec.sql[0])
			if !hasArg(rec.args[0], value) {
				t.Fatalf("patched value %q is not among the arguments %v", value, rec.args[0])
			}
		}
	})
}

// FuzzCursor feeds arbitrary cursors to List: each is rejected with
// ErrInvalidCursor or, if it happens to decode, only moves the start of
// the page; it never panics.
func FuzzCursor(f *testing.F) {
	f.Add("")
	f.Add("!!!")
	f.Add("eyJvIjoxLCJrIjpbXX0")                 // {"o":1,"k":[]}
	f.Add("eyJvIjoxLCJrIjpbIngiLDEsbnVsbF19")    // {"o":1,"k":["x",1,null]}
	f.Add("W3siIjp7fX0sW10sbnVsbCwiXHUwMDAwIl0") // [{"":{}},[],null,"\u0000"]
	repo, err := pgrepo.New[account, int64]("accounts")
	if err != nil {
		f.Fatal(err)
	}
	q := pgrepo.Query{OrderBy: []pgrepo.Order{pgrepo.Desc("created_at")}, Limit: 5}
	// A cursor List made for this ordering decodes: without one among the
	// seeds, the branch that checks the SQL of a decoded cursor never runs.
	page, err := repo.List(context.Background(), &zeroRowsDB{n: q.Limit + 1}, q)
	if err != nil || page.Next == "" {
		f.Fatalf("making a real cursor: next %q, error %v", page.Next, err)
	}
	f.Add(page.Next)
	f.Fuzz(func(t *testing.T, cursor string) {
		rec := &recorder{}
		q := q
		q.After = cursor
		_, err := repo.List(context.Background(), rec, q)
		switch {
		case errors.Is(err, errRecorded):
			checkSQL(t, rec.sql[0])
		case !errors.Is(err, pgrepo.ErrInvalidCursor):
			t.Fatalf("cursor %q: got %v, want ErrInvalidCursor", cursor, err)
		}
	})
}
