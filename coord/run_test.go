package coord

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun_HappyPathAppliesEveryStep(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	ctx := context.Background()

	state := regState{UserID: "u1", Email: "u1@example.com"}
	info, err := h.Run(ctx, "u1", &state)
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, allApplied, f.effects(t, "u1"))

	got, err := c.Get(ctx, "u1")
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, got.Status)
	assert.Equal(t, 4, got.Step)
	assert.Empty(t, got.Error)
}
