package chat

import (
	"github.com/google/uuid"
)

// OperationStatus is where an operation that spans stores is.
type OperationStatus string

// The statuses of an Operation. Pending changes to any other; failed
// changes to resolved, or through an operator's retry to compensated.
const (
	// OperationPending: logged and not finished yet; the recovery loop
	// finishes it, forward or by undoing what was done.
	OperationPending OperationStatus = "pending"
	// OperationSucceeded: done in every store.
	OperationSucceeded OperationStatus = "succeeded"
	// OperationCompensated: undone; nothing of it is left in any store.
	OperationCompensated OperationStatus = "compensated"
	// OperationFailed: it could not be undone, or it stopped after its
	// process crashed again and again; it waits for an operator.
	OperationFailed OperationStatus = "failed"
	// OperationResolved: an operator ended it by hand (after it failed);
	// what it left in the stores is what the operator made of it.
	OperationResolved OperationStatus = "resolved"
)

// Operation is a registration, update or deletion as the saga log has it:
// what a client that got 202 Accepted polls.
type Operation struct {
	// ID is the saga's id: "register-user/{user id}",
	// "update-user/{user id}/{uuid}" or "delete-user/{user id}/{uuid}".
	ID     string          `json:"id"`
	Kind   string          `json:"kind"` // "register-user", "update-user" or "delete-user"
	UserID uuid.UUID       `json:"user_id"`
	Status OperationStatus `json:"status"`
	// User is the user's URL once a registration or an update succeeded.
	User    string `json:"user,omitempty"`
	Message string `json:"message"`
}

// Pending is the error of an operation that did not finish during the
// request but is durably logged: the recovery loop finishes it, forward or
// by undoing it, and Operation says where to follow it. For the client it
// is not a failure: the API answers 202 Accepted.
type Pending struct {
	Operation *Operation
	Err       error // why it did not finish during the request, for logs
}

// Error says which operation is pending.
func (p *Pending) Error() string {
	msg := "operation " + p.Operation.ID + " is logged and will be finished by recovery"
	if p.Err != nil {
		msg += ": " + p.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (p *Pending) Unwrap() error { return p.Err }
