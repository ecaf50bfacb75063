package docrepo_test

import (
	"context"
	"strings"
	"testing"

	"github.com/polystore/polystore/docrepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// marshalled returns d as extended JSON, to compare what goes on the wire.
func marshalled(t *testing.T, d any) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(d, false, false)
	require.NoError(t, err)
	return string(b)
}

func TestFilter_BSON(t *testing.T) {
	tests := []struct {
		name string
		f    docrepo.Filter
		want string
	}{
		{"zero", docrepo.Filter{}, `{}`},
		{"all", docrepo.All(), `{}`},
		{"eq", docrepo.Eq("a", 1), `{"a":1}`},
		{"eq regex-looking string", docrepo.Eq("a", "/.*/"), `{"a":"/.*/"}`},
		{"eq document", docrepo.Eq("a", bson.D{{Key: "b", Value: "c"}}), `{"a":{"b":"c"}}`},
		{"ne", docrepo.Ne("a", nil), `{"a":{"$ne":null}}`},
		{"gt", docrepo.Gt("a", 1), `{"a":{"$gt":1}}`},
		{"gte", docrepo.Gte("a", 1), `{"a":{"$gte":1}}`},
		{"lt", docrepo.Lt("a", 1), `{"a":{"$lt":1}}`},
		{"lte", docrepo.Lte("a", 1), `{"a":{"$lte":1}}`},
		{"in", docrepo.In("a", 1, "x"), `{"a":{"$in":[1,"x"]}}`},
		{"nin", docrepo.Nin("a"), `{"a":{"$nin":[]}}`},
		{"exists", docrepo.Exists("a", false), `{"a":{"$exists":false}}`},
		{"and", docrepo.And(docrepo.Eq("a", 1), docrepo.Eq("b", 2)), `{"$and":[{"a":1},{"b":2}]}`},
		{"and of none", docrepo.And(), `{}`},
		{"or", docrepo.Or(docrepo.Eq("a", 1), docrepo.Lt("b", 2)), `{"$or":[{"a":1},{"b":{"$lt":2}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.f.BSON()
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, marshalled(t, d))
		})
	}
}

func TestFilter_HostileInputReturnsErrInvalid(t *testing.T) {
	tests := map[string]docrepo.Filter{
		"empty field":             docrepo.Eq("", 1),
		"operator field":          docrepo.Eq("$where", "sleep(1000)"),
		"dotted field":            docrepo.Eq("profile.admin", true),
		"NUL in field":            docrepo.Eq("a\x00b", 1),
		"operator document value": docrepo.Eq("a", bson.M{"$ne": nil}),
		"operator bson.D value":   docrepo.Gt("a", bson.D{{Key: "$gt", Value: ""}}),
		"nested operator value":   docrepo.Eq("a", bson.M{"b": bson.M{"$exists": true}}),
		"operator in array value": docrepo.Eq("a", bson.A{bson.M{"$gt": 1}}),
		"operator map value":      docrepo.Eq("a", map[string]any{"$regex": ".*"}),
		"struct tagged as operator": docrepo.Eq("a", struct {
			X int `bson:"$gt"`
		}{1}),
		"regular expression value": docrepo.Eq("a", bson.Regex{Pattern: ".*"}),
		"regular expression in In": docrepo.In("a", "x", bson.Regex{Pattern: "^a"}),
		"JavaScript value":         docrepo.Eq("a", bson.JavaScript("while(true){}")),
		"JavaScript with scope":    docrepo.Eq("a", bson.CodeWithScope{Code: "x", Scope: bson.D{}}),
		"unencodable value":        docrepo.Eq("a", make(chan int)),
		"bad filter inside And":    docrepo.And(docrepo.Eq("a", 1), docrepo.Eq("$b", 1)),
		"bad filter inside Or":     docrepo.Or(docrepo.Eq("a", bson.M{"$gt": 1})),
		"Or of nothing":            docrepo.Or(),
		"operator field in Exists": docrepo.Exists("$where", true),
		"operator value in Nin":    docrepo.Nin("a", bson.M{"$in": bson.A{1}}),
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := f.BSON()
			assert.ErrorIs(t, err, docrepo.ErrInvalid)
		})
	}
}

func TestUpdate_BSON(t *testing.T) {
	u := docrepo.NewUpdate().
		Set("a", 1).Unset("b").Inc("c", 2).Push("d", "x").PushSlice("e", -5, "y", "z").
		Pull("f", "w").AddToSet("g", 1, 2).CurrentDate("h")
	d, err := u.BSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{
		"$set": {"a": 1}, "$unset": {"b": ""}, "$inc": {"c": 2},
		"$push": {"d": {"$each": ["x"]}, "e": {"$each": ["y", "z"], "$slice": -5}},
		"$pull": {"f": "w"}, "$addToSet": {"g": {"$each": [1, 2]}}, "$currentDate": {"h": true}
	}`, marshalled(t, d))
}

// The server, not only the builder, must treat hostile strings as data.
func TestRepository_Find_HostileValuesMatchOnlyAsLiterals(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r, article{Title: "plain"}, article{Title: `{"$ne": null}`}, article{Title: ".*"})

	for _, v := range []string{`{"$ne": null}`, ".*"} {
		got, err := r.Find(ctx, docrepo.Query{Filter: docrepo.Eq("title", v)})
		require.NoError(t, err)
		require.Len(t, got, 1, "only the document holding %q literally", v)
		assert.Equal(t, v, got[0].Title)
	}
	for _, f := range []docrepo.Filter{docrepo.Eq("title", bson.M{"$ne": nil}), docrepo.Eq("title", bson.Regex{Pattern: ".*"})} {
		_, err := r.Find(ctx, docrepo.Query{Filter: f})
		assert.ErrorIs(t, err, docrepo.ErrInvalid)
	}
}

// FuzzFilterAndUpdate feeds hostile field names and operator-shaped values
// to the builders and checks the BSON they produce: either ErrInvalid, or a
// document whose only '$' keys are the operators the builder itself writes,
// at the places it writes them. `go test` runs the seed corpus; `go test
// -fuzz FuzzFilterAndUpdate ./docrepo/` explores further.
func FuzzFilterAndUpdate(f *testing.F) {
	for _, s := range [][2]string{
		{"title", "x"}, {"$where", "sleep(1)"}, {"a.b", "1"}, {"a\x00", "x"}, {"", ""},
		{"ok", "$gt"}, {"ok", "$ne"}, {"$", "$"}, {"..", "$$"}, {"émoji😀", "$regex"},
		{"x", "a.$b"}, {"_id", "$oid"}, {"x", "$numberLong"},
	} {
		f.Add(s[0], s[1], "v")
	}
	f.Fuzz(func(t *testing.T, field, key, value string) {
		plain := field != "" && !strings.HasPrefix(field, "$") && !strings.ContainsAny(field, ".\x00")
		values := []any{value, bson.M{key: value}, bson.D{{Key: key, Value: bson.D{{Key: key, Value: value}}}}, bson.A{bson.M{key: 1}}}

		for _, v := range values {
			for _, flt := range []docrepo.Filter{docrepo.Eq(field, v), docrepo.Gt(field, v), docrepo.In(field, v, value), docrepo.And(docrepo.Eq(field, v))} {
				d, err := flt.BSON()
				if err != nil {
					require.ErrorIs(t, err, docrepo.ErrInvalid)
					continue
				}
				require.True(t, plain, "field %q was accepted", field)
				checkFilterDoc(t, d)
			}
			for _, u := range []*docrepo.Update{docrepo.NewUpdate().Set(field, v), docrepo.NewUpdate().Pull(field, v), docrepo.NewUpdate().PushSlice(field, 3, v)} {
				d, err := u.BSON()
				if err != nil {
					require.ErrorIs(t, err, docrepo.ErrInvalid)
					continue
				}
				require.True(t, plain, "field %q was accepted", field)
				checkUpdateDoc(t, d)
			}
		}
	})
}

var filterOps = map[string]bool{"$ne": true, "$gt": true, "$gte": true, "$lt": true, "$lte": true, "$in": true, "$nin": true, "$exists": true}

// checkFilterDoc walks {field: literal}, {field: {$op: literal}} and
// {$and|$or: [filter...]}.
func checkFilterDoc(t *testing.T, d bson.D) {
	t.Helper()
	raw, err := bson.Marshal(d)
	require.NoError(t, err)
	elems, err := bson.Raw(raw).Elements()
	require.NoError(t, err)
	for _, e := range elems {
		switch e.Key() {
		case "$and", "$or":
			vals, err := e.Value().Array().Values()
			require.NoError(t, err)
			for _, v := range vals {
				var sub bson.D
				require.NoError(t, bson.Unmarshal(v.Document(), &sub))
				checkFilterDoc(t, sub)
			}
			continue
		}
		require.False(t, strings.HasPrefix(e.Key(), "$"), "top-level key %q", e.Key())
		require.False(t, strings.Contains(e.Key(), "."), "top-level key %q", e.Key())
		// {field: literal} (Eq), or {field: {$op: literal}}: a literal
		// document never has a '$' key, so the two cannot be confused.
		doc, isDoc := e.Value().DocumentOK()
		first, _ := doc.IndexErr(0)
		if !isDoc || first == nil || !strings.HasPrefix(first.Key(), "$") {
			requireLiteral(t, e.Value())
			continue
		}
		ops, err := doc.Elements()
		require.NoError(t, err)
		require.Len(t, ops, 1)
		require.True(t, filterOps[ops[0].Key()], "operator %q", ops[0].Key())
		if k := ops[0].Key(); k == "$in" || k == "$nin" {
			vals, err := ops[0].Value().Array().Values()
			require.NoError(t, err)
			for _, v := range vals {
				requireLiteral(t, v)
			}
		} else {
			requireLiteral(t, ops[0].Value())
		}
	}
}

var updateOps = map[string]bool{"$set": true, "$unset": true, "$inc": true, "$push": true, "$pull": true, "$addToSet": true, "$currentDate": true}

func checkUpdateDoc(t *testing.T, d bson.D) {
	t.Helper()
	raw, err := bson.Marshal(d)
	require.NoError(t, err)
	elems, err := bson.Raw(raw).Elements()
	require.NoError(t, err)
	for _, op := range elems {
		require.True(t, updateOps[op.Key()], "operator %q", op.Key())
		fields, err := op.Value().Document().Elements()
		require.NoError(t, err)
		for _, f := range fields {
			require.False(t, strings.HasPrefix(f.Key(), "$") || strings.Contains(f.Key(), "."), "field %q", f.Key())
			if op.Key() == "$push" || op.Key() == "$addToSet" {
				mods, err := f.Value().Document().Elements()
				require.NoError(t, err)
				for _, m := range mods {
					require.Contains(t, []string{"$each", "$slice"}, m.Key())
					if m.Key() == "$each" {
						vals, err := m.Value().Array().Values()
						require.NoError(t, err)
						for _, v := range vals {
							requireLiteral(t, v)
						}
					}
				}
				continue
			}
			requireLiteral(t, f.Value())
		}
	}
}

// requireLiteral fails when v holds a '$' key, a regular expression or
// JavaScript at any depth.
func requireLiteral(t *testing.T, v bson.RawValue) {
	t.Helper()
	switch v.Type {
	case bson.TypeRegex, bson.TypeJavaScript, bson.TypeCodeWithScope:
		t.Fatalf("value of type %v reached the filter", v.Type)
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		elems, err := bson.Raw(v.Value).Elements()
		require.NoError(t, err)
		for _, e := range elems {
			if v.Type == bson.TypeEmbeddedDocument {
				require.False(t, strings.HasPrefix(e.Key(), "$"), "key %q inside a value", e.Key())
			}
			requireLiteral(t, e.Value())
		}
	}
}
