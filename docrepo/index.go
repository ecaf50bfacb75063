package docrepo

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// IndexKind is how an index orders one key.
type IndexKind int

// Index key kinds.
const (
	// Ascending orders the key from smallest to largest; the zero value.
	Ascending IndexKind = iota
	// Descending orders the key from largest to smallest.
	Descending
	// Text makes the key part of a text-search index.
	Text
)

// IndexKey is one key of an index: a field, which may be a dotted path into
// nested documents here (indexes are schema, written by the developer), and
// its kind.
type IndexKey struct {
	// Field is the field or dotted path.
	Field string
	// Kind is the order or text. Default: Ascending.
	Kind IndexKind
}

// IndexSpec describes one index.
type IndexSpec struct {
	// Name names the index. Default: the server's name from the keys, such
	// as "email_1" or "team_1_createdAt_-1".
	Name string
	// Keys are the indexed fields, in order; at least one.
	Keys []IndexKey
	// Unique rejects a second document with the same key (ErrDuplicate).
	// Default: false.
	Unique bool
	// TTL, when positive, makes the server delete a document once the time
	// in its (single, date-valued) key is older than TTL. The server keeps
	// whole seconds, so TTL must be a whole number of seconds, from 1s to
	// 2^31-1 s (ErrInvalid otherwise: a negative, sub-second or fractional
	// TTL is never rounded). Default: 0, never.
	TTL time.Duration
}

// EnsureIndexes creates the indexes that do not exist yet and returns their
// names, in order. It is idempotent: an index that already exists with the
// same keys and options is left as it is. Errors: ErrInvalid (a spec with
// no key, a bad field name, an unknown key kind, a TTL that is not a
// positive whole number of seconds or is on several keys; nothing is
// created from that spec on), ErrConflict (an
// index of that name or keys exists with other options), ErrUnsupported
// (the server lacks the index type: FerretDB 1.24 has neither TTL nor
// text indexes).
func (r *Repository[T, ID]) EnsureIndexes(ctx context.Context, specs ...IndexSpec) ([]string, error) {
	ctx, c := r.tel.start(ctx, opEnsureIndexes)
	names, err := r.ensureIndexes(ctx, specs)
	c.end(ctx, err)
	return names, err
}

func (r *Repository[T, ID]) ensureIndexes(ctx context.Context, specs []IndexSpec) ([]string, error) {
	names := make([]string, 0, len(specs))
	for i, s := range specs {
		model, err := s.model()
		if err != nil {
			return names, fmt.Errorf("index %d: %w", i, err)
		}
		// One at a time, so that an error names the index that caused it.
		name, err := r.coll.Indexes().CreateOne(ctx, model)
		if err != nil {
			return names, translate(fmt.Sprintf("ensure index %d %s", i, s.describe()), err)
		}
		names = append(names, name)
	}
	// MongoDB refuses an index whose name is taken by one with other options,
	// but FerretDB keeps the old one silently: compare what is there.
	if err := r.checkIndexes(ctx, specs, names); err != nil {
		return names, err
	}
	return names, nil
}

// checkIndexes returns ErrConflict when an index named in names differs
// from its spec in uniqueness, TTL or (except for text indexes, which the
// server stores in another form) keys.
func (r *Repository[T, ID]) checkIndexes(ctx context.Context, specs []IndexSpec, names []string) error {
	cur, err := r.coll.Indexes().List(ctx)
	if err != nil {
		return translate("ensure indexes: list", err)
	}
	var existing []struct {
		Name   string   `bson:"name"`
		Key    bson.Raw `bson:"key"`
		Unique bool     `bson:"unique"`
		TTL    *int64   `bson:"expireAfterSeconds"`
	}
	if err := cur.All(ctx, &existing); err != nil {
		return translate("ensure indexes: list", err)
	}
	for i, s := range specs {
		for _, ix := range existing {
			if ix.Name != names[i] {
				continue
			}
			want, _ := s.model()
			var wantTTL *int64
			if s.TTL > 0 {
				ttl := s.ttlSeconds()
				wantTTL = &ttl
			}
			switch {
			case ix.Unique != s.Unique:
				return fmt.Errorf("%w: index %s exists with unique=%v", ErrConflict, ix.Name, ix.Unique)
			case (ix.TTL == nil) != (wantTTL == nil) || (ix.TTL != nil && *ix.TTL != *wantTTL):
				return fmt.Errorf("%w: index %s exists with another TTL", ErrConflict, ix.Name)
			case !s.hasText() && !sameKeys(ix.Key, want.Keys.(bson.D)):
				return fmt.Errorf("%w: index %s exists with keys %v", ErrConflict, ix.Name, ix.Key)
			}
		}
	}
	return nil
}

func (s IndexSpec) hasText() bool {
	for _, k := range s.Keys {
		if k.Kind == Text {
			return true
		}
	}
	return false
}

// sameKeys compares an index's key document with the wanted one; the server
// may store 1 as an int32, an int64 or a double.
func sameKeys(got bson.Raw, want bson.D) bool {
	elems, err := got.Elements()
	if err != nil || len(elems) != len(want) {
		return false
	}
	for i, e := range elems {
		n, ok := e.Value().AsInt64OK()
		if e.Key() != want[i].Key || !ok || n != int64(want[i].Value.(int)) {
			return false
		}
	}
	return true
}

func (s IndexSpec) describe() string {
	if s.Name != "" {
		return s.Name
	}
	parts := make([]string, len(s.Keys))
	for i, k := range s.Keys {
		parts[i] = k.Field
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func (s IndexSpec) model() (mongo.IndexModel, error) {
	if len(s.Keys) == 0 {
		return mongo.IndexModel{}, invalidf("index with no key")
	}
	keys := make(bson.D, 0, len(s.Keys))
	for _, k := range s.Keys {
		if err := checkPath(k.Field); err != nil {
			return mongo.IndexModel{}, err
		}
		var v any
		switch k.Kind {
		case Ascending:
			v = 1
		case Descending:
			v = -1
		case Text:
			v = "text"
		default:
			return mongo.IndexModel{}, invalidf("index key %q: unknown kind %d", k.Field, k.Kind)
		}
		keys = append(keys, bson.E{Key: k.Field, Value: v})
	}
	opts := options.Index()
	if s.Name != "" {
		opts.SetName(s.Name)
	}
	if s.Unique {
		opts.SetUnique(true)
	}
	switch {
	case s.TTL < 0:
		return mongo.IndexModel{}, invalidf("negative TTL %v", s.TTL)
	case s.TTL > 0 && s.TTL%time.Second != 0:
		return mongo.IndexModel{}, invalidf("TTL %v is not a whole number of seconds (the server keeps seconds)", s.TTL)
	case s.TTL > 0 && len(s.Keys) != 1:
		return mongo.IndexModel{}, invalidf("a TTL index has exactly one key")
	case s.ttlSeconds() > math.MaxInt32:
		return mongo.IndexModel{}, invalidf("TTL %v is too long", s.TTL)
	case s.TTL > 0:
		opts.SetExpireAfterSeconds(int32(s.ttlSeconds()))
	}
	return mongo.IndexModel{Keys: keys, Options: opts}, nil
}

// ttlSeconds is TTL in seconds; model has checked that it is whole.
func (s IndexSpec) ttlSeconds() int64 { return int64(s.TTL / time.Second) }

// checkPath accepts a dotted path of plain field names.
func checkPath(path string) error {
	for seg := range strings.SplitSeq(path, ".") {
		if err := checkField(seg); err != nil {
			return fmt.Errorf("field path %q: %w", path, err)
		}
	}
	return nil
}
