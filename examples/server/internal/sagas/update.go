package sagas

import (
	"context"

	"github.com/google/uuid"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/chat"
)

// update is the state of an update-user saga.
type update struct {
	UserID uuid.UUID         `json:"user_id"`
	Match  chat.Precondition `json:"match"`
	// Version is the single version sagas logged before Match existed;
	// recovery of such a saga reads it as Match.
	Version int64          `json:"version,omitempty"`
	Patch   chat.UserPatch `json:"patch"`
	Result  *chat.User     `json:"result,omitempty"` // set by the update step
}

// condition is the saga's precondition, from Match or an older record's
// Version.
func (u *update) condition() chat.Precondition {
	if !u.Match.Any && len(u.Match.Versions) == 0 && u.Version > 0 {
		return chat.Precondition{Versions: []int64{u.Version}}
	}
	return u.Match
}

// updateDefinition: update the row if its version meets the precondition
// (PostgreSQL, the pivot), then invalidate the cached profile (Redis),
// retried until done: a Redis outage delays the invalidation, through
// recovery, but never drops it.
func (s *Sagas) updateDefinition() *coord.Definition[update] {
	return coord.Define(UpdateUserSaga,
		coord.Step[update]{
			Name: "update-user",
			Kind: coord.Pivot,
			TxAction: func(ctx context.Context, tx coord.Tx, u *update) error {
				res, err := s.users.UpdateUserIn(ctx, tx, u.UserID, u.condition(), u.Patch)
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
// CodeNotFound, CodePreconditionFailed (cond not met), CodeConflict; a
// *chat.Pending when the saga is logged but its update has not committed
// yet; CodeUnavailable when nothing was done or the outcome is unknown. A
// cache invalidation left to recovery is not an error: the change is
// committed and the invalidation durably logged.
func (s *Sagas) UpdateUser(ctx context.Context, id uuid.UUID, cond chat.Precondition, p chat.UserPatch) (*chat.User, error) {
	u := update{UserID: id, Match: cond, Patch: p}
	sagaID := UpdateUserSaga + "/" + id.String() + "/" + uuid.NewString()
	info, err := s.update.Run(ctx, sagaID, &u)
	// Past the pivot the change is committed and the invalidation logged:
	// done for the caller.
	if err := s.outcome(UpdateUserSaga, sagaID, id, info, err, 0, true); err != nil {
		return nil, err
	}
	return u.Result, nil
}
