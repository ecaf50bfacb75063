package sagas

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/chat"
)

// pendingOperation describes a saga that Run left to recovery.
func pendingOperation(saga, id string, userID uuid.UUID) *chat.Operation {
	return &chat.Operation{
		ID: id, Kind: saga, UserID: userID, Status: chat.OperationPending,
		Message: "logged; the recovery loop finishes it, forward or by undoing it",
	}
}

// Operation returns the user saga with this id as the log has it:
// CodeInvalid for an id that is not one of the forms this server gives out
// ("register-user/{uuid}", "update-user/{uuid}/{uuid}",
// "delete-user/{uuid}/{uuid}"), CodeNotFound when the log has no such saga
// (never started, or removed by retention), CodeUnavailable when the log
// cannot be read.
func (s *Sagas) Operation(ctx context.Context, id string) (*chat.Operation, error) {
	kind, userID, ok := parseOperationID(id)
	if !ok {
		return nil, chat.Errorf(chat.CodeInvalid, "operation id: must be register-user/{user id}, update-user/{user id}/{uuid} or delete-user/{user id}/{uuid}")
	}
	info, err := s.coord.Get(ctx, id)
	if errors.Is(err, coord.ErrNotFound) {
		return nil, chat.Wrap(chat.CodeNotFound, err, "operation not found")
	}
	if err != nil {
		return nil, chat.Wrap(chat.CodeUnavailable, err, "the saga log is unavailable")
	}
	op := pendingOperation(kind, id, userID)
	switch info.Status {
	case coord.StatusSucceeded:
		op.Status, op.Message = chat.OperationSucceeded, "done in every store"
		if kind != DeleteUserSaga {
			op.User = "/users/" + userID.String()
		}
	case coord.StatusCompensated:
		op.Status, op.Message = chat.OperationCompensated, "undone: nothing of it is left in any store"
	case coord.StatusFailed:
		op.Status, op.Message = chat.OperationFailed, "a store failed and it could not be undone; it is logged for an operator"
	case coord.StatusDead:
		op.Status, op.Message = chat.OperationFailed, "its process stopped again and again while running it; it is logged for an operator"
	case coord.StatusResolved:
		op.Status, op.Message = chat.OperationResolved, "ended by an operator by hand"
	}
	return op, nil
}

// parseOperationID splits a saga id of one of the forms Operation takes,
// each UUID in its canonical 36-character spelling.
func parseOperationID(id string) (kind string, userID uuid.UUID, ok bool) {
	parts := strings.Split(id, "/")
	want := 3
	if parts[0] == RegisterUserSaga {
		want = 2
	} else if parts[0] != UpdateUserSaga && parts[0] != DeleteUserSaga {
		return "", uuid.UUID{}, false
	}
	if len(parts) != want {
		return "", uuid.UUID{}, false
	}
	for _, p := range parts[1:] {
		if _, err := uuid.Parse(p); err != nil || len(p) != 36 {
			return "", uuid.UUID{}, false
		}
	}
	return parts[0], uuid.MustParse(parts[1]), true
}
