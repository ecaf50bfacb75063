package sagas_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/mongostore"
	"github.com/polystore/polystore/examples/server/internal/pgstore"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/examples/server/internal/sagas"
	"github.com/polystore/polystore/internal/servicetest"
)

// racingCache is the real profile cache, except that its first
// Invalidate is preceded by before: a concurrent update that commits and
// drops the cached profile just before the registration's cache step
// reaches Redis. (The step used to read the row and then write it to the
// cache: the update landed between the two, and the older profile stayed
// cached for its TTL.)
type racingCache struct {
	chat.ProfileCache
	once   sync.Once
	before func()
}

func (c *racingCache) Invalidate(ctx context.Context, id uuid.UUID) error {
	c.once.Do(c.before)
	return c.ProfileCache.Invalidate(ctx, id)
}

func TestRegister_UpdateCommittedDuringTheCacheStepIsWhatReadsReturn(t *testing.T) {
	ctx := context.Background()
	pool := servicetest.Postgres(t)
	rdb, prefix := servicetest.Redis(t)
	require.NoError(t, pgstore.Migrate(ctx, pool))
	users, err := pgstore.NewUserRepository(pool)
	require.NoError(t, err)
	conversations, err := mongostore.NewConversationRepository(servicetest.Mongo(t))
	require.NoError(t, err)
	profiles, err := redisstore.NewProfileCache(rdb, prefix, redisstore.ProfileCacheOptions{Timeout: 2 * time.Second})
	require.NoError(t, err)
	c, err := coord.New(ctx, pool, coord.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	id := uuid.New()
	level := "C1"
	cache := &racingCache{ProfileCache: profiles}
	// An update of the new user, as the update saga does it: the row first,
	// then the cached profile is dropped.
	cache.before = func() {
		_, err := users.UpdateUser(ctx, id, chat.Precondition{Any: true}, chat.UserPatch{Level: &level})
		if assert.NoError(t, err) {
			assert.NoError(t, profiles.Invalidate(ctx, id))
		}
	}
	s, err := sagas.New(c, users, conversations, cache, nil, nil, nil, sagas.Options{})
	require.NoError(t, err)

	_, _, err = s.Register(ctx, &chat.User{
		ID: id, Username: "racer", Email: "racer@example.com", PasswordHash: "x",
		Language: "fr", Level: "A1",
	})
	require.NoError(t, err)

	got, err := profiles.Profile(ctx, id, func(ctx context.Context) (*chat.User, error) {
		return users.FindUser(ctx, id)
	})
	require.NoError(t, err)
	assert.Equal(t, "C1", got.Level, "the cache serves the profile from before the update")
	assert.Equal(t, int64(2), got.Version)
}
