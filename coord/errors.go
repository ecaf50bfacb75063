package coord

import "errors"

// Sentinel errors of package coord, recognised with errors.Is. The error of
// the step or of the driver that caused them stays reachable through
// errors.Is and errors.As as well.
var (
	// ErrInvalid reports a bad argument, and that nothing took effect: an
	// invalid saga definition or RetryPolicy, invalid Options, an empty saga
	// id or one that is not valid UTF-8 or contains a NUL byte, a nil state
	// or a state that does not encode to JSON, a nil client or collection, a
	// negative duration. A zero value means a default only where its
	// documentation says so; no invalid value is replaced by a default.
	ErrInvalid = errors.New("coord: invalid")

	// ErrNotFound reports that no saga has the given id.
	ErrNotFound = errors.New("coord: saga not found")

	// ErrCompensated reports a saga that did not succeed: a step failed and
	// every completed step was compensated. It wraps the step's error.
	ErrCompensated = errors.New("coord: saga compensated")

	// ErrFailed reports a saga whose compensation kept failing: it is left
	// in the failed status, listed by Coordinator.Failed, for a person to
	// act on. It wraps the compensation's error.
	ErrFailed = errors.New("coord: saga failed")

	// ErrIncomplete reports a saga that is durably in the log but that Run
	// did not see finish: its context ended, a retriable step has not
	// succeeded yet, the log could not be written or read, or another
	// coordinator holds it. Recovery (Coordinator.Recover, Start) drives it
	// to its end, forward or by compensation; Get or Run with the same id
	// gives the outcome. Run returns it only once the record is known to
	// have committed.
	ErrIncomplete = errors.New("coord: saga not finished")

	// ErrNotStarted reports a Run that did not start its saga: the record's
	// insert failed before it could commit (the database refused it or was
	// unreachable, or ctx had ended), so nothing is in the log and no step
	// ran. Running it again with the same id is safe, and so is reporting
	// the failure.
	ErrNotStarted = errors.New("coord: saga not started")

	// ErrOutcomeUnknown reports a Run whose record's insert broke in flight
	// (the connection failed before the answer came) and that could not
	// read the log afterwards to learn whether it had committed. The saga
	// is either in the log, and recovery drives it, or nowhere, and nothing
	// took effect. Run again with the same id to learn which: it returns the
	// saga's outcome, or runs it.
	ErrOutcomeUnknown = errors.New("coord: saga outcome unknown")

	// ErrLeaseLost reports that this coordinator no longer holds the saga's
	// lease: it expired and another coordinator recovered the saga.
	ErrLeaseLost = errors.New("coord: lease lost")

	// ErrStepPanic reports a try of an action or compensation (Action,
	// TxAction, Compensate, TxCompensate) that panicked. The panic is
	// recovered and becomes the try's error, whose text is "coord: step
	// panicked: " and the panic value (which stays reachable with errors.Is
	// and errors.As when it is an error): it is logged like any failed try
	// and the step's RetryPolicy decides what follows (another try, then
	// compensation, or the saga failing). A TxAction's or TxCompensate's
	// transaction is rolled back. The stack at the panic goes to
	// Hooks.StepFailed (StepEvent.Stack), not to the log.
	ErrStepPanic = errors.New("coord: step panicked")

	// ErrResolved reports a saga an operator resolved by hand
	// (Coordinator.Resolve): it neither succeeded nor was compensated by
	// coord.
	ErrResolved = errors.New("coord: saga resolved by an operator")

	// ErrDead reports a saga that recovery took over more than
	// Options.DeadLetterAfter times without progress: it is left dead for
	// an operator (Coordinator.Retry or Resolve).
	ErrDead = errors.New("coord: saga dead-lettered")

	// ErrWrongStatus reports an operator action (Retry, Resolve, Cancel)
	// refused because the saga is not in a status it applies to; nothing
	// took effect. The error names the status.
	ErrWrongStatus = errors.New("coord: the saga's status does not allow this action")

	// ErrPastPivot reports a Cancel refused because the saga has reached
	// its pivot (or, without one, its last step): it can only go forward.
	// Nothing took effect. It comes with ErrWrongStatus.
	ErrPastPivot = errors.New("coord: the saga has reached its pivot and cannot be cancelled")

	// ErrCancelled is the cause a cancelled saga was compensated for: Run's
	// ErrCompensated wraps it.
	ErrCancelled = errors.New("coord: saga cancelled by an operator")

	// ErrUnsealable reports a logged state that Options.Codec cannot decode:
	// for a Sealer, sealed with a key its key ring does not have, or that
	// does not open (wrong key, altered). The saga is left as it is in the
	// log; add the key and recover (or Retry) it.
	ErrUnsealable = errors.New("coord: state cannot be unsealed")

	// ErrClosed reports a call on a closed Coordinator.
	ErrClosed = errors.New("coord: coordinator closed")
)

// errCrashed is returned when Options.crashAt cut the run: the coordinator
// behaves as a process that died at that point.
var errCrashed = errors.New("coord: run cut by fault injection")

// errExists tells Run that the saga id is already in the log, as another
// run's.
var errExists = errors.New("coord: saga exists")
