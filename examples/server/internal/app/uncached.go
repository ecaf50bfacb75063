package app

import (
	"context"

	"github.com/google/uuid"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// Uncached is a chat.ProfileCache that caches nothing: every read loads from
// the store. The server uses it when the cache is disabled, to measure what
// the cache saves.
type Uncached struct{}

var _ chat.ProfileCache = Uncached{}

// Profile calls load.
func (Uncached) Profile(ctx context.Context, _ uuid.UUID, load func(context.Context) (*chat.User, error)) (*chat.User, error) {
	return load(ctx)
}

// Invalidate does nothing.
func (Uncached) Invalidate(context.Context, uuid.UUID) error { return nil }
