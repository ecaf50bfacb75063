package sagas

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/pgrepo"
)

// Saga definition names, as stored in the log: renaming one strands the
// sagas of the old name that recovery has yet to finish.
const (
	RegisterUserSaga = "register-user"
	UpdateUserSaga   = "update-user"
	DeleteUserSaga   = "delete-user"
)

// welcomeMessage opens every new user's welcome conversation.
const welcomeMessage = "Welcome! Tell me about your day, in the language you are learning, and I will help you say it better."

// UserStore is the user store whose writes join a step's transaction, so
// that the row and the step's log record commit together.
type UserStore interface {
	chat.UserStore
	CreateUserIn(ctx context.Context, db pgrepo.DB, u *chat.User) error
	UpdateUserIn(ctx context.Context, db pgrepo.DB, id uuid.UUID, cond chat.Precondition, p chat.UserPatch) (*chat.User, error)
	DeleteUserIn(ctx context.Context, db pgrepo.DB, id uuid.UUID) error
}

// SessionRevoker ends every session of a user (chat.SessionStore).
type SessionRevoker interface {
	RevokeAll(ctx context.Context, userID uuid.UUID) error
}

// BoardLeaver takes a user off the XP board (chat.Board).
type BoardLeaver interface {
	Remove(ctx context.Context, userID uuid.UUID) error
}

// Sagas registers and runs the user sagas on a coordinator.
type Sagas struct {
	coord         *coord.Coordinator
	users         UserStore
	conversations chat.ConversationStore
	cache         chat.ProfileCache
	sessions      SessionRevoker // nil: the step does nothing
	board         BoardLeaver    // nil: the step does nothing
	register      *coord.Handle[registration]
	update        *coord.Handle[update]
	remove        *coord.Handle[deletion]
	outcomes      *prometheus.CounterVec
	sealed        bool     // Options.Sealed
	hashes        sync.Map // uuid.UUID → password hash of registrations running here (unsealed log)
}

// Options tunes the sagas.
type Options struct {
	// Sealed says that the coordinator seals the saga states
	// (coord.Options.Codec, coord.NewSealer). Then a registration's
	// password hash goes into its state, sealed, until the user row holds
	// it, and recovery in any process can redo the insert. Unsealed (the
	// default), the hash is never logged: this process keeps it in memory
	// while Register runs, and a registration that a crash or an outage
	// cuts before its insert commits is compensated by recovery instead of
	// finished.
	Sealed bool
}

// New registers the sagas with c. sessions and board, which the deletion
// revokes and leaves, may be nil (the steps then do nothing). reg, when not
// nil, receives a counter of saga outcomes.
func New(c *coord.Coordinator, users UserStore, conversations chat.ConversationStore, cache chat.ProfileCache,
	sessions SessionRevoker, board BoardLeaver, reg prometheus.Registerer, opts Options) (*Sagas, error) {
	s := &Sagas{
		coord: c, users: users, conversations: conversations, cache: cache, sessions: sessions, board: board,
		sealed: opts.Sealed,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagas_total",
			Help: "Sagas run by requests, by definition and outcome (succeeded, compensated, failed, incomplete, not_started, unknown, error).",
		}, []string{"saga", "outcome"}),
	}
	if reg != nil {
		if err := reg.Register(s.outcomes); err != nil {
			return nil, err
		}
	}
	var err error
	if s.register, err = coord.Register(c, s.registerDefinition()); err != nil {
		return nil, err
	}
	if s.update, err = coord.Register(c, s.updateDefinition()); err != nil {
		return nil, err
	}
	if s.remove, err = coord.Register(c, s.deleteDefinition()); err != nil {
		return nil, err
	}
	return s, nil
}

// storeRetry retries a step while its store is unavailable, never for an
// answer such as a taken username, which would only come again.
var storeRetry = coord.RetryPolicy{
	Attempts: 3,
	Backoff:  50 * time.Millisecond,
	Retryable: func(err error) bool {
		return chat.ErrorCode(err) == chat.CodeUnavailable
	},
}

// afterPivotRetry is the policy of the retriable steps after the pivot:
// two quick tries keep the request short, since the coordinator's recovery
// loop goes on trying until the step succeeds.
var afterPivotRetry = coord.RetryPolicy{Attempts: 2, Backoff: 50 * time.Millisecond}

// stepTimeout bounds each try of a step, so a hung store cannot hold a
// request for ever.
const stepTimeout = 5 * time.Second

// outcome counts a saga's outcome and turns coord's errors into the
// application's, so that every success the API reports is durable:
//
//   - nil when the saga succeeded, and also when it stopped after its
//     pivot (info.Step > pivot) if pastPivot says that is done for the
//     caller: the pivot's change is committed and the retriable steps left
//     are durably logged, never undone, and finished by recovery;
//   - a *chat.Pending naming the operation when coord reports the saga
//     durably logged but unfinished (ErrIncomplete): recovery finishes it,
//     forward or by compensation;
//   - CodeUnavailable when nothing was started (coord.ErrNotStarted: safe
//     to retry), when the outcome is unknown (coord.ErrOutcomeUnknown: the
//     message names the operation to look up later), when the saga failed
//     for an operator, or for any other error of coord's;
//   - a compensated saga reports the step error that caused it (a taken
//     username stays a 409).
func (s *Sagas) outcome(saga, id string, userID uuid.UUID, info coord.Info, err error, pivot int, pastPivot bool) error {
	switch {
	case err == nil:
		s.outcomes.WithLabelValues(saga, "succeeded").Inc()
		return nil
	case errors.Is(err, coord.ErrIncomplete):
		s.outcomes.WithLabelValues(saga, "incomplete").Inc()
		if pastPivot && info.Status == coord.StatusRunning && info.Step > pivot {
			return nil
		}
		return &chat.Pending{Operation: pendingOperation(saga, id, userID), Err: err}
	case errors.Is(err, coord.ErrCompensated):
		s.outcomes.WithLabelValues(saga, "compensated").Inc()
		switch chat.ErrorCode(err) {
		case chat.CodeInternal:
			return chat.Wrap(chat.CodeUnavailable, err, "a store failed; nothing was changed")
		case chat.CodeUnavailable:
			return chat.Wrap(chat.CodeUnavailable, err, chat.ErrorMessage(err)+"; nothing was changed")
		}
		return err // the step's own answer, such as a taken username
	case errors.Is(err, coord.ErrFailed):
		s.outcomes.WithLabelValues(saga, "failed").Inc()
		return chat.Wrap(chat.CodeUnavailable, err, "a store failed and the change could not be undone yet; it is logged for an operator")
	case errors.Is(err, coord.ErrNotStarted):
		s.outcomes.WithLabelValues(saga, "not_started").Inc()
		return chat.Wrap(chat.CodeUnavailable, err, "PostgreSQL is unavailable: nothing was changed; try again")
	case errors.Is(err, coord.ErrOutcomeUnknown):
		s.outcomes.WithLabelValues(saga, "unknown").Inc()
		return chat.Wrap(chat.CodeUnavailable, err, "PostgreSQL became unavailable while the operation was being logged: "+
			"whether it was made is unknown; GET /operations/"+id+" tells once PostgreSQL is back (404: it was not made)")
	}
	s.outcomes.WithLabelValues(saga, "error").Inc()
	return chat.Wrap(chat.CodeUnavailable, err, "could not run the operation")
}
