package cacherepo_test

import (
	"context"
	"testing"

	"github.com/polystore/polystore/cacherepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCache_OnEvent_ReportsEachOutcomeWithItsKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var evs events
	c, _, _ := newCache[string](t, cacherepo.Options{OnEvent: evs.record})

	_, err := c.GetOrLoad(ctx, "a", (&counter[string]{value: "A"}).load) // miss, load
	require.NoError(t, err)
	_, err = c.GetOrLoad(ctx, "a", (&counter[string]{value: "A"}).load) // hit
	require.NoError(t, err)
	_, err = c.GetOrLoad(ctx, "gone", (&counter[string]{err: cacherepo.ErrNotFound}).load) // miss, load
	require.Error(t, err)
	_, err = c.GetOrLoad(ctx, "gone", (&counter[string]{}).load) // tombstone hit
	require.Error(t, err)
	_, err = c.GetOrLoad(ctx, "bad", (&counter[string]{err: assert.AnError}).load) // miss, load error
	require.Error(t, err)

	var got []string
	for _, e := range evs.all {
		got = append(got, e.Kind.String()+":"+e.Key)
	}
	assert.Equal(t, []string{
		"miss:a", "load:a", "hit:a",
		"miss:gone", "load:gone", "tombstone_hit:gone",
		"miss:bad", "load_error:bad",
	}, got)
	loadErrs := evs.of(cacherepo.EventLoadError)
	require.Len(t, loadErrs, 1)
	assert.ErrorIs(t, loadErrs[0].Err, assert.AnError)
	assert.Positive(t, evs.of(cacherepo.EventLoad)[0].Duration)

	assert.Equal(t, cacherepo.Stats{Hits: 1, Misses: 3, Loads: 2, LoadErrors: 1, TombstoneHits: 1}, c.Stats())
}

func TestEventKind_String_NamesEveryKind(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for k := cacherepo.EventHit; k <= cacherepo.EventLoaderPanic; k++ {
		name := k.String()
		assert.NotEqual(t, "unknown", name, "kind %d", k)
		assert.False(t, seen[name], "duplicate name %q", name)
		seen[name] = true
	}
	assert.Equal(t, "unknown", cacherepo.EventKind(0).String())
}
