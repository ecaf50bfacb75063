package sagas

import (
	"context"

	"github.com/google/uuid"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/chat"
)

// update is the state of an update-user saga.
type update struct {
	UserID  uuid.UUID      `json:"user_id"`
	Version int64          `json:"version"`
	Patch   chat.UserPatch `json:"patch"`
	Result  *chat.User     `json:"result,omitempty"` // set by the update step
}

// updateDefinition: update the row if its version still matches
// (PostgreSQL, the pivot), then invalidate the cached profile (Redis),
// retried until done: a Redis outage delays the invalidation, through
// recovery, but never drops it.
func (s *Sagas) updateDefinition() *coord.Definition[update] {
	return coord.Define(UpdateUserSaga,
		coord.Step[update]{
			Name: "update-user",
			Kind: coord.Pivot,
			TxAction: func(ctx context.Context, tx coord.Tx, u *update) error {
				res, err := s.users.UpdateUserIn(ctx, tx, u.UserID, u.Version, u.Patch)
				u.Result = res
				return err
			},
			Retry:   storeRetry,
			Timeout: stepTimeout,
		},
		coord.Step[update]{
			Name: "invalidate-profile",
			Kind: coord.Retriable,
			Action: func(ctx context.Context, u *update) error {
				return s.cache.Invalidate(ctx, u.UserID)
			},
			Retry:   afterPivotRetry,
			Timeout: stepTimeout,
		},
	)
}

// UpdateUser runs the update-user saga and returns the updated user.
// CodeNotFound, CodePreconditionFailed (stale version), CodeConflict.
func (s *Sagas) UpdateUser(ctx context.Context, id uuid.UUID, version int64, p chat.UserPatch) (*chat.User, error) {
	u := update{UserID: id, Version: version, Patch: p}
	_, err := s.update.Run(ctx, "update-user/"+id.String()+"/"+uuid.NewString(), &u)
	if err := s.outcome(UpdateUserSaga, err); err != nil {
		return nil, err
	}
	return u.Result, nil
}
