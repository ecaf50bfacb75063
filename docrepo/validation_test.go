package docrepo_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Every setting and argument that cannot be meant (a negative size or
// duration, a value the server cannot hold) gives ErrInvalid before
// anything is sent; none is replaced by a default. Zero means the default
// where the field's documentation says so (TestOptions_ZeroMeansTheDefault).
func TestInvalidValuesReturnErrInvalidNeverADefault(t *testing.T) {
	ctx := context.Background()
	r, db := articles(t)
	url := servicetest.MongoURL(t)
	a := article{Title: "a"}
	require.NoError(t, r.Insert(ctx, &a))
	newRepo := func(o docrepo.Options) error {
		_, err := docrepo.New[article, bson.ObjectID](db.Collection("other"), o)
		return err
	}
	connect := func(url string, cfg docrepo.Config) error {
		c, err := docrepo.Connect(ctx, url, cfg)
		if err == nil {
			_ = c.Disconnect(ctx)
		}
		return err
	}
	find := func(q docrepo.Query) error { _, err := r.Find(ctx, q); return err }
	findOne := func(q docrepo.Query) error { _, err := r.FindOne(ctx, q); return err }
	page := func(req docrepo.PageRequest) error { _, err := r.Page(ctx, req); return err }
	offset := func(req docrepo.OffsetRequest) error { _, err := r.OffsetPage(ctx, req); return err }
	aggregate := func(p *docrepo.Pipeline) error { _, err := docrepo.Aggregate[bson.M](ctx, r, p); return err }
	index := func(s docrepo.IndexSpec) error { _, err := r.EnsureIndexes(ctx, s); return err }
	update := func(u *docrepo.Update) error { return r.Update(ctx, a.ID, u) }
	key := []docrepo.IndexKey{{Field: "updated"}}

	tests := []struct {
		name string
		call func() error
	}{
		{"Config.ConnectTimeout negative", func() error { return connect(url, docrepo.Config{ConnectTimeout: -time.Second}) }},
		{"Config.ServerSelectionTimeout negative", func() error { return connect(url, docrepo.Config{ServerSelectionTimeout: -1}) }},
		{"Config.MinPoolSize above MaxPoolSize", func() error { return connect(url, docrepo.Config{MinPoolSize: 10, MaxPoolSize: 2}) }},
		{"Config.MinPoolSize above the URL's maxPoolSize", func() error {
			return connect("mongodb://127.0.0.1:27017/?maxPoolSize=2", docrepo.Config{MinPoolSize: 3})
		}},
		{"URL connectTimeoutMS negative", func() error { return connect("mongodb://127.0.0.1:27017/?connectTimeoutMS=-5", docrepo.Config{}) }},
		{"Config.AppName above 128 bytes", func() error { return connect(url, docrepo.Config{AppName: strings.Repeat("x", 129)}) }},
		{"URL appName above 128 bytes", func() error {
			return connect("mongodb://127.0.0.1:27017/?appName="+strings.Repeat("x", 129), docrepo.Config{})
		}},
		{"URL maxPoolSize negative", func() error { return connect("mongodb://127.0.0.1:27017/?maxPoolSize=-1", docrepo.Config{}) }},

		{"Options.DefaultPageSize negative", func() error { return newRepo(docrepo.Options{DefaultPageSize: -1}) }},
		{"Options.MaxPageSize negative", func() error { return newRepo(docrepo.Options{MaxPageSize: -1}) }},
		{"Options.MaxPageSize above 2^31-1", func() error { return newRepo(docrepo.Options{MaxPageSize: math.MaxInt32 + 1}) }},
		{"Options.DefaultPageSize above MaxPageSize", func() error { return newRepo(docrepo.Options{DefaultPageSize: 20, MaxPageSize: 10}) }},
		{"Options.DefaultPageSize above the default MaxPageSize", func() error { return newRepo(docrepo.Options{DefaultPageSize: 1001}) }},

		{"Query.Skip negative", func() error { return find(docrepo.Query{Skip: -1}) }},
		{"Query.Limit negative", func() error { return find(docrepo.Query{Limit: -1}) }},
		{"FindOne Query.Limit negative", func() error { return findOne(docrepo.Query{Limit: -1}) }},
		{"FindOne Query.Skip negative", func() error { return findOne(docrepo.Query{Skip: -1}) }},

		{"PageRequest.Limit negative", func() error { return page(docrepo.PageRequest{Limit: -1}) }},
		{"PageRequest.Limit above MaxPageSize", func() error { return page(docrepo.PageRequest{Limit: 1001}) }},
		{"OffsetRequest.Page negative", func() error { return offset(docrepo.OffsetRequest{Page: -1}) }},
		{"OffsetRequest.Page whose offset overflows", func() error { return offset(docrepo.OffsetRequest{Page: math.MaxInt, PerPage: 1000}) }},
		{"OffsetRequest.PerPage negative", func() error { return offset(docrepo.OffsetRequest{PerPage: -1}) }},
		{"OffsetRequest.PerPage above MaxPageSize", func() error { return offset(docrepo.OffsetRequest{PerPage: 1001}) }},

		{"Pipeline.Skip negative", func() error { return aggregate(docrepo.NewPipeline().Skip(-1)) }},
		{"Pipeline.Limit zero", func() error { return aggregate(docrepo.NewPipeline().Limit(0)) }},
		{"Pipeline.Limit negative", func() error { return aggregate(docrepo.NewPipeline().Limit(-5)) }},
		{"Aggregate of a nil repository", func() error {
			_, err := docrepo.Aggregate[bson.M, article, bson.ObjectID](ctx, nil, docrepo.NewPipeline())
			return err
		}},

		{"IndexSpec.TTL negative", func() error { return index(docrepo.IndexSpec{Keys: key, TTL: -time.Second}) }},
		{"IndexSpec.TTL under a second", func() error { return index(docrepo.IndexSpec{Keys: key, TTL: 500 * time.Millisecond}) }},
		{"IndexSpec.TTL not whole seconds", func() error { return index(docrepo.IndexSpec{Keys: key, TTL: 1500 * time.Millisecond}) }},
		{"IndexSpec.TTL above 2^31-1 seconds", func() error { return index(docrepo.IndexSpec{Keys: key, TTL: (math.MaxInt32 + 1) * time.Second}) }},
		{"IndexSpec.TTL on two keys", func() error {
			return index(docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "a"}, {Field: "b"}}, TTL: time.Hour})
		}},
		{"IndexKey.Kind negative", func() error { return index(docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "a", Kind: -1}}}) }},
		{"IndexKey.Kind unknown", func() error { return index(docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "a", Kind: 3}}}) }},

		{"Update.PushSlice keep zero", func() error { return update(docrepo.NewUpdate().PushSlice("tags", 0, "x")) }},
		{"Update.Inc by a uint64", func() error { return update(docrepo.NewUpdate().Inc("views", uint64(1))) }},
		{"Insert with a negative version", func() error { return r.Insert(ctx, &article{Version: -1}) }},
		{"InsertMany with a negative version", func() error { return r.InsertMany(ctx, []article{{}, {Version: -1}}) }},
		{"Modify with a nil fn", func() error { return r.Modify(ctx, a.ID, nil) }},
		{"WithTransaction with a nil fn", func() error { return docrepo.WithTransaction(ctx, db.Client(), nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.call(), docrepo.ErrInvalid)
		})
	}

	got, err := r.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, a, got, "no invalid call wrote to the document")
	assert.Len(t, indexSpecs(t, r), 1, "no invalid spec created an index: only _id_ is there")
	n, err := r.Count(ctx, docrepo.All())
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "no invalid call inserted a document")
}

func TestOptions_ZeroMeansTheDefault(t *testing.T) {
	ctx := context.Background()
	db := servicetest.Mongo(t)
	zero, err := docrepo.New[article, bson.ObjectID](db.Collection("articles"), docrepo.Options{})
	require.NoError(t, err)
	capped, err := docrepo.New[article, bson.ObjectID](db.Collection("articles"), docrepo.Options{MaxPageSize: 3})
	require.NoError(t, err, "the default DefaultPageSize (50) gives way to a lower MaxPageSize")
	docs := make([]article, 60)
	require.NoError(t, zero.InsertMany(ctx, docs))

	tests := []struct {
		name string
		repo *docrepo.Repository[article, bson.ObjectID]
		want int
	}{
		{"zero Options: 50", zero, 50},
		{"MaxPageSize 3, DefaultPageSize zero: 3", capped, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.repo.Page(ctx, docrepo.PageRequest{})
			require.NoError(t, err)
			assert.Len(t, p.Items, tt.want)
			o, err := tt.repo.OffsetPage(ctx, docrepo.OffsetRequest{})
			require.NoError(t, err)
			assert.Equal(t, 1, o.Page)
			assert.Equal(t, tt.want, o.PerPage)
		})
	}

	t.Run("Query zero Skip and Limit: every document", func(t *testing.T) {
		all, err := zero.Find(ctx, docrepo.Query{})
		require.NoError(t, err)
		assert.Len(t, all, 60)
	})
	t.Run("IndexSpec zero TTL: no expiry", func(t *testing.T) {
		names, err := zero.EnsureIndexes(ctx, docrepo.IndexSpec{Keys: []docrepo.IndexKey{{Field: "updated"}}})
		require.NoError(t, err)
		assert.NotContains(t, indexSpecs(t, zero)[names[0]], "expireAfterSeconds")
	})
	t.Run("Config zero: the URL's settings and the defaults", func(t *testing.T) {
		c, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{})
		require.NoError(t, err)
		assert.NoError(t, c.Disconnect(ctx))
	})
	t.Run("Config.AppName of 128 bytes, the most the handshake takes", func(t *testing.T) {
		c, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{AppName: strings.Repeat("x", 128)})
		require.NoError(t, err)
		assert.NoError(t, c.Disconnect(ctx))
	})
}
