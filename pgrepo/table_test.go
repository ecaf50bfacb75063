package pgrepo_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/pgrepo"
)

func TestNew_BadStructReturnsErrInvalid(t *testing.T) {
	type noPK struct {
		Name string `db:"name"`
	}
	type twoPKs struct {
		A int `db:"a,pk"`
		B int `db:"b,pk"`
	}
	type duplicate struct {
		ID   int    `db:"id,pk"`
		Name string `db:"name"`
		Alt  string `db:"name"`
	}
	type unknownOption struct {
		ID int `db:"id,pk,autoincrement"`
	}
	type textVersion struct {
		ID int    `db:"id,pk"`
		V  string `db:"v,version"`
	}
	type twoVersions struct {
		ID int `db:"id,pk"`
		V  int `db:"v,version"`
		W  int `db:"w,version"`
	}
	type nonNullDeleted struct {
		ID int       `db:"id,pk"`
		D  time.Time `db:"d,softdelete"`
	}
	type readonlyPK struct {
		ID int `db:"id,pk,readonly"`
	}
	type Base struct {
		ID int `db:"id,pk"`
	}
	type embeddedPointer struct {
		*Base
		Name string `db:"name"`
	}

	tests := []struct {
		name string
		new  func() error
		want string
	}{
		{"no primary key", func() error { _, err := pgrepo.New[noPK, int]("t"); return err }, "no primary key"},
		{"composite key with a scalar ID", func() error { _, err := pgrepo.New[twoPKs, int]("t"); return err }, "is composite: ID must be a struct"},
		{"duplicate column", func() error { _, err := pgrepo.New[duplicate, int]("t"); return err }, `duplicate column "name"`},
		{"unknown option", func() error { _, err := pgrepo.New[unknownOption, int]("t"); return err }, `"autoincrement"`},
		{"text version", func() error { _, err := pgrepo.New[textVersion, int]("t"); return err }, "not an integer"},
		{"two versions", func() error { _, err := pgrepo.New[twoVersions, int]("t"); return err }, "more than one version"},
		{"non-nullable softdelete", func() error { _, err := pgrepo.New[nonNullDeleted, int]("t"); return err }, "cannot hold NULL"},
		{"readonly primary key", func() error { _, err := pgrepo.New[readonlyPK, int]("t"); return err }, "pk cannot be"},
		{"embedded pointer", func() error { _, err := pgrepo.New[embeddedPointer, int]("t"); return err }, "embedded pointer"},
		{"not a struct", func() error { _, err := pgrepo.New[int, int]("t"); return err }, "not a struct"},
		{"empty table name", func() error { _, err := pgrepo.New[Base, int](""); return err }, "bad table name"},
		{"empty schema part", func() error { _, err := pgrepo.New[Base, int]("public."); return err }, "bad table name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.new()
			require.Error(t, err)
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// Base and audit are embedded by value in flattened, as
// pgx.RowToStructByName allows; audit's type is unexported.
type Base struct {
	ID int64 `db:"id,pk,generated"`
}

type audit struct {
	CreatedAt time.Time `db:",generated"`
}

type flattened struct {
	Base
	audit
	DisplayName string
	UserID      *int64
	HTTPStatus  int
}

func TestNew_UntaggedAndEmbeddedFieldsMapToSnakeCaseColumns(t *testing.T) {
	pool := newFixture(t).pool
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE SCHEMA app; CREATE TABLE app.things (
		id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(),
		display_name text NOT NULL, user_id bigint, http_status int NOT NULL)`)
	require.NoError(t, err)
	repo, err := pgrepo.New[flattened, int64]("app.things")
	require.NoError(t, err)

	v := flattened{DisplayName: "x", UserID: ptr[int64](7), HTTPStatus: 404}
	require.NoError(t, repo.Insert(ctx, pool, &v))
	assert.NotZero(t, v.ID)
	assert.False(t, v.CreatedAt.IsZero())

	got, err := repo.Get(ctx, pool, v.ID)
	require.NoError(t, err)
	assert.Equal(t, v, got)
}

// odd has identifiers that only work quoted: a reserved word, upper case,
// spaces and a double quote.
type odd struct {
	Key   int64  `db:"order,pk,generated"`
	Label string `db:"Mixed Case"`
	Quote string `db:"say \"hi\""`
}

func TestRepository_QuotesEveryIdentifier(t *testing.T) {
	pool := newFixture(t).pool
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE SCHEMA "My Schema"; CREATE TABLE "My Schema"."select" (
		"order" bigserial PRIMARY KEY, "Mixed Case" text NOT NULL, "say ""hi""" text NOT NULL)`)
	require.NoError(t, err)
	repo, err := pgrepo.New[odd, int64]("My Schema.select")
	require.NoError(t, err)

	v := odd{Label: "a", Quote: "b"}
	require.NoError(t, repo.Insert(ctx, pool, &v))
	v.Label = "c"
	require.NoError(t, repo.Update(ctx, pool, &v))
	_, err = repo.Patch(ctx, pool, v.Key, map[string]any{`say "hi"`: "d"})
	require.NoError(t, err)
	page, err := repo.List(ctx, pool, pgrepo.Query{Where: pgrepo.Eq("Mixed Case", "c"), OrderBy: []pgrepo.Order{pgrepo.Desc(`say "hi"`)}, Limit: 1})
	require.NoError(t, err)

	require.Len(t, page.Items, 1)
	assert.Equal(t, odd{Key: v.Key, Label: "c", Quote: "d"}, page.Items[0])
	require.NoError(t, repo.Delete(ctx, pool, v.Key))
}

type userID int64

type textKeyed struct {
	Code string `db:"code,pk"`
}

type int64Keyed struct {
	ID int64 `db:"id,pk,generated"`
}

type namedKeyed struct {
	ID userID `db:"id,pk,generated"`
}

type uuidKeyed struct {
	ID [16]byte `db:"id,pk"`
}

func TestNew_IDTypeMustFitThePrimaryKey(t *testing.T) {
	tests := []struct {
		name string
		new  func() error
		ok   bool
		want string // in the error: both types
	}{
		{"int64 ID for a string key", func() error { _, err := pgrepo.New[textKeyed, int64]("t"); return err }, false, "ID type int64 does not fit the primary key \"code\" of type string"},
		{"int ID for a string key (Go converts it to a rune)", func() error { _, err := pgrepo.New[textKeyed, int]("t"); return err }, false, "ID type int does not fit"},
		{"[]byte ID for a string key", func() error { _, err := pgrepo.New[textKeyed, []byte]("t"); return err }, false, "ID type []uint8 does not fit"},
		{"string ID for an int64 key", func() error { _, err := pgrepo.New[int64Keyed, string]("t"); return err }, false, `primary key "id" of type int64`},
		{"float64 ID for an int64 key", func() error { _, err := pgrepo.New[int64Keyed, float64]("t"); return err }, false, "ID type float64 does not fit"},
		{"pointer ID for an int64 key", func() error { _, err := pgrepo.New[int64Keyed, *int64]("t"); return err }, false, "ID type *int64 does not fit"},
		{"interface ID for an int64 key", func() error { _, err := pgrepo.New[int64Keyed, any]("t"); return err }, false, "ID type interface {} does not fit"},
		{"string ID for a [16]byte key", func() error { _, err := pgrepo.New[uuidKeyed, string]("t"); return err }, false, "does not fit"},
		{"the key's own type", func() error { _, err := pgrepo.New[int64Keyed, int64]("t"); return err }, true, ""},
		{"a named type of the key's kind", func() error { _, err := pgrepo.New[int64Keyed, userID]("t"); return err }, true, ""},
		{"the key's kind for a named key type", func() error { _, err := pgrepo.New[namedKeyed, int64]("t"); return err }, true, ""},
		{"another integer size", func() error { _, err := pgrepo.New[int64Keyed, int]("t"); return err }, true, ""},
		{"string for a string key", func() error { _, err := pgrepo.New[textKeyed, string]("t"); return err }, true, ""},
		{"[16]byte for a [16]byte key", func() error { _, err := pgrepo.New[uuidKeyed, [16]byte]("t"); return err }, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.new()
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, pgrepo.ErrInvalid)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestNew_NamedIDTypeWorksAgainstTheServer shows that a named ID type that
// New accepts also reaches PostgreSQL correctly.
func TestNew_NamedIDTypeWorksAgainstTheServer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	repo, err := pgrepo.New[team, userID]("teams")
	require.NoError(t, err)
	tm := team{Name: "red"}
	require.NoError(t, repo.Insert(ctx, f.pool, &tm))

	got, err := repo.Get(ctx, f.pool, userID(tm.ID))
	require.NoError(t, err)
	assert.Equal(t, "red", got.Name)
}
