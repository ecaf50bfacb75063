package coord

import (
	"context"
	"log/slog"
	"time"
)

// Hooks are called by the coordinator as steps run, for logs and metrics.
// Every field may be nil. They run on the saga's goroutine, so they must be
// quick and must not call the coordinator. The step hooks of a parallel
// group's members (see Parallel) run on the members' goroutines, so they
// may be called concurrently and must be safe for concurrent use.
type Hooks struct {
	// StepStarted is called before each try of an action or compensation.
	// A try is not always followed by StepSucceeded or StepFailed: a cut
	// run (context ended, log unreachable) stops without either, and so
	// does a Run of an id already in the log, whose first TxAction is
	// called and rolled back (see README.md, the record rides in the first
	// TxAction).
	StepStarted func(ctx context.Context, e StepEvent)

	// StepSucceeded is called when an action succeeded and its log record
	// is written, or, for a saga's last step that is a retriable Action
	// or a parallel group of retriable members, handed to be written after
	// Run returns (see README.md, "Run does not wait for the final
	// record").
	StepSucceeded func(ctx context.Context, e StepEvent)

	// StepFailed is called after each failed try of an action or
	// compensation; e.Err holds the error.
	StepFailed func(ctx context.Context, e StepEvent)

	// StepCompensated is called when a compensation succeeded and its log
	// record is written.
	StepCompensated func(ctx context.Context, e StepEvent)

	// RecoverFailed is called when a Recover of the loop started by Start
	// fails; the loop tries again at its next tick.
	RecoverFailed func(ctx context.Context, err error)

	// PurgeFailed is called when a Purge of the loop started by Start
	// (Options.Retention) fails; the loop tries again at its next tick.
	PurgeFailed func(ctx context.Context, err error)
}

// StepEvent describes a step of a saga for Hooks.
type StepEvent struct {
	SagaID       string        // the saga's id
	Saga         string        // the definition's name
	Step         string        // the step's name
	Attempt      int           // 1 for the first try
	Compensation bool          // the event is about the compensation
	Err          error         // the try's error (StepFailed only)
	Elapsed      time.Duration // time since the try started (not for StepStarted)
	// Stack is the stack of the step's goroutine when the try panicked
	// (StepFailed of a try whose Err wraps ErrStepPanic only; nil otherwise).
	Stack []byte
}

// SlogHooks returns Hooks that log every event to logger: starts at debug
// level, successes and compensations at info, failures at warn.
func SlogHooks(logger *slog.Logger) Hooks {
	attrs := func(e StepEvent) []slog.Attr {
		a := []slog.Attr{
			slog.String("saga_id", e.SagaID),
			slog.String("saga", e.Saga),
			slog.String("step", e.Step),
			slog.Int("attempt", e.Attempt),
			slog.Bool("compensation", e.Compensation),
		}
		if e.Elapsed > 0 {
			a = append(a, slog.Duration("elapsed", e.Elapsed))
		}
		if e.Err != nil {
			a = append(a, slog.String("error", e.Err.Error()))
		}
		if e.Stack != nil {
			a = append(a, slog.String("stack", string(e.Stack)))
		}
		return a
	}
	log := func(level slog.Level, msg string) func(context.Context, StepEvent) {
		return func(ctx context.Context, e StepEvent) {
			logger.LogAttrs(ctx, level, msg, attrs(e)...)
		}
	}
	return Hooks{
		StepStarted:     log(slog.LevelDebug, "coord: step started"),
		StepSucceeded:   log(slog.LevelInfo, "coord: step succeeded"),
		StepFailed:      log(slog.LevelWarn, "coord: step failed"),
		StepCompensated: log(slog.LevelInfo, "coord: step compensated"),
		RecoverFailed: func(ctx context.Context, err error) {
			logger.LogAttrs(ctx, slog.LevelError, "coord: recovery failed", slog.String("error", err.Error()))
		},
		PurgeFailed: func(ctx context.Context, err error) {
			logger.LogAttrs(ctx, slog.LevelError, "coord: purge failed", slog.String("error", err.Error()))
		},
	}
}

func call(h func(context.Context, StepEvent), ctx context.Context, e StepEvent) {
	if h != nil {
		h(ctx, e)
	}
}
