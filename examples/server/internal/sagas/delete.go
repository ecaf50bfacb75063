package sagas

import (
	"context"

	"github.com/google/uuid"

	"github.com/polystore/polystore/coord"
)

// deletion is the state of a delete-user saga.
type deletion struct {
	UserID uuid.UUID `json:"user_id"`
}

// deleteDefinition: delete the user row (PostgreSQL, the pivot: once it is
// gone the user is gone), then revoke their sessions and take them off the
// XP board (Redis), then delete their conversations (MongoDB) and cached
// profile (Redis), each retried until done.
//
// Revoking comes after the pivot, as a retriable step, not before it as a
// compensatable one: a revocation cannot be undone (a compensation could
// not give the client its token back), so before the pivot a deletion that
// then failed would have logged the user out for nothing, and a Redis
// outage would block every deletion. After the pivot it is retried until
// done, by the request and then by recovery: RevokeAll is idempotent. A
// session that outlives the row for that while finds no user to act on:
// PATCH, DELETE and XP read the row (404), and its conversations are being
// deleted. It is the first step after the pivot, so that the window is as
// short as the request allows.
func (s *Sagas) deleteDefinition() *coord.Definition[deletion] {
	return coord.Define(DeleteUserSaga,
		coord.Step[deletion]{
			Name: "delete-user",
			Kind: coord.Pivot,
			TxAction: func(ctx context.Context, tx coord.Tx, d *deletion) error {
				return s.users.DeleteUserIn(ctx, tx, d.UserID)
			},
			Retry:   storeRetry,
			Timeout: stepTimeout,
		},
		coord.Step[deletion]{
			Name: "revoke-sessions",
			Kind: coord.Retriable,
			Action: func(ctx context.Context, d *deletion) error {
				if s.sessions == nil {
					return nil
				}
				return s.sessions.RevokeAll(ctx, d.UserID)
			},
			Retry:   afterPivotRetry,
			Timeout: stepTimeout,
		},
		coord.Step[deletion]{
			Name: "leave-leaderboard",
			Kind: coord.Retriable,
			Action: func(ctx context.Context, d *deletion) error {
				if s.board == nil {
					return nil
				}
				return s.board.Remove(ctx, d.UserID)
			},
			Retry:   afterPivotRetry,
			Timeout: stepTimeout,
		},
		coord.Step[deletion]{
			Name: "delete-conversations",
			Kind: coord.Retriable,
			Action: func(ctx context.Context, d *deletion) error {
				return s.conversations.DeleteUserConversations(ctx, d.UserID)
			},
			Retry:   afterPivotRetry,
			Timeout: stepTimeout,
		},
		coord.Step[deletion]{
			Name: "invalidate-profile",
			Kind: coord.Retriable,
			Action: func(ctx context.Context, d *deletion) error {
				return s.cache.Invalidate(ctx, d.UserID)
			},
			Retry:   afterPivotRetry,
			Timeout: stepTimeout,
		},
	)
}

// DeleteUser runs the delete-user saga. CodeNotFound when there is no such
// user. A *chat.Pending when the saga is logged but not finished, the row
// deleted or not (conversations and cache entries that could not be
// removed yet among them: recovery removes them); CodeUnavailable when
// nothing was done or the outcome is unknown.
func (s *Sagas) DeleteUser(ctx context.Context, id uuid.UUID) error {
	// Each request is its own saga: deleting twice must say 404 the second
	// time, not replay the first outcome.
	sagaID := DeleteUserSaga + "/" + id.String() + "/" + uuid.NewString()
	info, err := s.remove.Run(ctx, sagaID, &deletion{UserID: id})
	// Done only when every step is: conversations or a cached profile left
	// to recovery make it pending, so that 204 means gone everywhere.
	return s.outcome(DeleteUserSaga, sagaID, id, info, err, 0, false)
}
