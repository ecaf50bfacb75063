package docrepo_test

import (
	"context"
	"testing"

	"github.com/polystore/polystore/docrepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type authorStats struct {
	Author string `bson:"_id"`
	Views  int    `bson:"total"`
}

func TestAggregate_GroupsIntoTypedResults(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r,
		article{Author: "ann", Views: 3}, article{Author: "ann", Views: 4},
		article{Author: "bob", Views: 10}, article{Author: "cat", Views: 1},
	)

	got, err := docrepo.Aggregate[authorStats](ctx, r, docrepo.NewPipeline().
		Match(docrepo.Gt("views", 1)).
		Group("author", docrepo.Sum("total", "views")).
		Sort(docrepo.Desc("total")))

	require.NoError(t, err)
	assert.Equal(t, []authorStats{{"bob", 10}, {"ann", 7}}, got)
}

func TestAggregate_Stages(t *testing.T) {
	ctx := context.Background()
	r, _ := articles(t)
	seed(t, r,
		article{Title: "a", Tags: []string{"go", "db"}, Views: 1},
		article{Title: "b", Tags: []string{"go"}, Views: 2},
		article{Title: "c", Views: 3},
	)

	type tagCount struct {
		Tag string `bson:"_id"`
		N   int    `bson:"n"`
	}
	tags, err := docrepo.Aggregate[tagCount](ctx, r, docrepo.NewPipeline().
		Unwind("tags").Group("tags", docrepo.Sum("n", "")).Sort(docrepo.Desc("n")).Limit(1))
	require.NoError(t, err)
	assert.Equal(t, []tagCount{{"go", 2}}, tags)

	type total struct {
		N int `bson:"n"`
	}
	n, err := docrepo.Aggregate[total](ctx, r, docrepo.NewPipeline().Match(docrepo.Gte("views", 2)).Count("n"))
	require.NoError(t, err)
	assert.Equal(t, []total{{2}}, n)

	titles, err := docrepo.Aggregate[article](ctx, r, docrepo.NewPipeline().Sort(docrepo.Asc("views")).Skip(1).Project("title"))
	require.NoError(t, err)
	require.Len(t, titles, 2)
	assert.Equal(t, "b", titles[0].Title)
	assert.Zero(t, titles[0].Views, "projected away")

	none, err := docrepo.Aggregate[article](ctx, r, docrepo.NewPipeline().Match(docrepo.Eq("title", "zzz")))
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestAggregate_SeveralAccumulators(t *testing.T) {
	ctx := context.Background()
	r, db := articles(t)
	seed(t, r, article{Author: "ann", Views: 3}, article{Author: "ann", Views: 5})
	type stats struct {
		N   int     `bson:"n"`
		Sum int     `bson:"sum"`
		Avg float64 `bson:"avg"`
		Min int     `bson:"min"`
		Max int     `bson:"max"`
		All []int   `bson:"all"`
	}

	got, err := docrepo.Aggregate[stats](ctx, r, docrepo.NewPipeline().
		Group("", docrepo.Sum("n", ""), docrepo.Sum("sum", "views"), docrepo.Avg("avg", "views"),
			docrepo.Min("min", "views"), docrepo.Max("max", "views"), docrepo.Push("all", "views")))

	if isFerretDB(t, db) {
		require.ErrorIs(t, err, docrepo.ErrUnsupported)
		t.Skip("FerretDB 1.24 implements only $sum and $count in $group (and computes only the first of several): the pipeline gave ErrUnsupported as documented")
	}
	require.NoError(t, err)
	assert.Equal(t, []stats{{2, 8, 4, 3, 5, []int{3, 5}}}, got)
}

func TestAggregate_BadPipelineReturnsErrInvalid(t *testing.T) {
	r, _ := articles(t)
	for name, p := range map[string]*docrepo.Pipeline{
		"nil":                     nil,
		"operator in match":       docrepo.NewPipeline().Match(docrepo.Eq("a", map[string]any{"$where": "1"})),
		"operator group field":    docrepo.NewPipeline().Group("$author"),
		"operator accumulator":    docrepo.NewPipeline().Group("author", docrepo.Sum("n", "$views")),
		"dotted accumulator name": docrepo.NewPipeline().Group("author", docrepo.Sum("a.b", "")),
		"accumulator named _id":   docrepo.NewPipeline().Group("author", docrepo.Sum("_id", "")),
		"average of no field":     docrepo.NewPipeline().Group("author", docrepo.Avg("a", "")),
		"empty sort":              docrepo.NewPipeline().Sort(),
		"empty project":           docrepo.NewPipeline().Project(),
		"negative skip":           docrepo.NewPipeline().Skip(-1),
		"zero limit":              docrepo.NewPipeline().Limit(0),
		"operator unwind":         docrepo.NewPipeline().Unwind("$tags"),
		"operator count":          docrepo.NewPipeline().Count("$n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := docrepo.Aggregate[article](context.Background(), r, p)
			assert.ErrorIs(t, err, docrepo.ErrInvalid)
		})
	}
}
