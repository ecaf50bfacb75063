package docrepo_test

import (
	"context"
	"testing"
	"time"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConnect_PingsAndHealthAnswers(t *testing.T) {
	ctx := context.Background()
	client, err := docrepo.Connect(ctx, servicetest.MongoURL(t), docrepo.Config{MaxPoolSize: 4, AppName: "docrepo-test"})
	require.NoError(t, err)

	assert.NoError(t, docrepo.Health(ctx, client))

	require.NoError(t, client.Disconnect(ctx))
	assert.Error(t, docrepo.Health(ctx, client), "a disconnected client is not healthy")
}

func TestConnect_Errors(t *testing.T) {
	ctx := context.Background()

	_, err := docrepo.Connect(ctx, "http://not-mongo", docrepo.Config{})
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
	_, err = docrepo.Connect(ctx, "mongodb://127.0.0.1:27017/?maxPoolSize=abc", docrepo.Config{})
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
	_, err = docrepo.Connect(ctx, "mongodb://127.0.0.1:27017/", docrepo.Config{MinPoolSize: 10, MaxPoolSize: 2})
	assert.ErrorIs(t, err, docrepo.ErrInvalid)

	// Port 1 on the loopback: nothing listens, so the ping fails fast.
	_, err = docrepo.Connect(ctx, "mongodb://127.0.0.1:1/", docrepo.Config{ServerSelectionTimeout: 300 * time.Millisecond})
	require.Error(t, err)
	assert.NotErrorIs(t, err, docrepo.ErrInvalid)
	assert.Contains(t, err.Error(), "ping")

	assert.ErrorIs(t, docrepo.Health(ctx, nil), docrepo.ErrInvalid)
}
