// Package coord runs operations that span PostgreSQL, Redis and MongoDB as
// sagas: ordered steps, each with a compensating action, recorded in a
// durable log in PostgreSQL so that a crash at any point ends, after
// recovery, with every step applied or every applied step compensated.
//
// It is a library inside the service, not a server beside it.
//
// # Sagas as code
//
// A saga is defined once, with Define, as a name and ordered steps on a state
// type S that the steps share and that is kept as JSON in the log:
//
//	saga := coord.Define("register-user",
//		coord.Step[Reg]{Name: "create-user", TxAction: insertUser, TxCompensate: deleteUser},
//		coord.Step[Reg]{Name: "welcome", Action: insertConversation, Compensate: deleteConversation},
//		coord.Step[Reg]{Name: "activate", Kind: coord.Pivot, TxAction: activateUser},
//		coord.Step[Reg]{Name: "cache-profile", Kind: coord.Retriable, Action: cacheProfile},
//	)
//	c, err := coord.New(ctx, pool, coord.Options{})   // creates the tables
//	defer c.Close()                                   // before pool.Close: writes the last final records
//	register, err := coord.Register(c, saga)
//	info, err := register.Run(ctx, "register:"+email, &Reg{...})
//
// Steps are compensatable (the default), at most one is the pivot (the point
// of no return), and the steps after it are retriable: retried until they
// succeed, never compensated. When a step up to the pivot fails after its
// retries (RetryPolicy, Timeout), the steps done so far are compensated in
// reverse order and Run returns an error wrapping ErrCompensated and the
// step's error. A compensation that keeps failing leaves the saga failed
// (ErrFailed), listed by Coordinator.Failed for a person, who retries or
// resolves it.
//
// Steps that do not depend on each other can form a parallel group
// (Parallel): its members, Action steps of one kind, run concurrently and
// share one log record written once all of them succeeded; when one fails,
// every member is compensated concurrently, then the steps before; a saga
// cut inside a group runs all its members again on recovery.
//
// # Durability and recovery
//
// Each saga is a row of coord_saga: status, next step, state, attempts, last
// error and a lease (owner, expiry). A TxAction or TxCompensate runs in the
// coordinator's transaction, so its writes and the step's log record commit
// together (a first TxAction's transaction also inserts the saga's record,
// so the saga appears in the log with its first step done, or not at all);
// any other step's log record is written right after it. Writes a step
// queues with ExecAtCommit travel with its COMMIT, so a step made of them
// costs one round trip. Every write checks
// the lease. The records whose loss only makes recovery replay idempotent
// steps (after a retriable step, after a compensatable Action followed by a
// TxAction, a compensation's progress) commit without waiting for the WAL
// flush; the rest, and every record an external effect depends on, are
// durable (README.md, Non-durable log records). The final record of a
// saga whose last step is a retriable Action (or a parallel group of
// retriable members) is written just after Run returns,
// the records of concurrent sagas together, gathered for up to 5 ms (the
// coordinator's own reads and Close wait for it; a lost one makes recovery
// replay that last step). Coordinator.Recover, and
// the loop of Coordinator.Start, take the sagas whose lease expired with
// FOR UPDATE SKIP LOCKED, in batches from an ordered index scan so that a
// claim costs the same whatever the backlog, and drive them on from the
// log on Options.RecoveryWorkers goroutines: a running saga is resumed
// forward (its current step runs again), a compensating one goes on
// compensating.
//
// # Idempotency
//
// Run inserts the saga's record before any step takes effect; with an id
// that exists no step takes effect (a first TxAction is called, its
// transaction rolled back) and Run returns that saga's outcome (see
// Handle.Run for the exact outcomes: nil, ErrNotStarted, ErrIncomplete,
// ErrOutcomeUnknown, ErrCompensated, ErrFailed). Since a step can run
// again after a crash, each step has a
// deterministic key (StepKey), and the barrier helpers make a replayed or
// late action or compensation take effect at most once: PgBarrier in the
// write's own transaction, RedisSet and RedisDel in a Lua script,
// MongoInsert and MongoDelete with a deterministic _id and a tombstone.
//
// # Operations
//
// Every log write appends its events to a history in the same statement
// (Coordinator.History). Coordinator.List pages through sagas by status,
// definition and time, and shows the stuck ones. An operator retries or
// resolves a failed or dead saga (Coordinator.Retry, Resolve) and cancels
// a running one before its pivot (Cancel), each recorded with who and why;
// a saga that recovery takes over too often without progress is
// dead-lettered (Options.DeadLetterAfter). Coordinator.Purge and
// Options.Retention remove finished sagas with their history and barriers.
// Options.Codec encodes the logged state; NewSealer seals it with
// AES-256-GCM under a key ring. Package coord/coordhttp is a console on
// all this.
//
// # Observability
//
// With an OpenTelemetry tracer provider (Options.TracerProvider, or the
// global one), each Run is a span ("coord.Run <definition>") under the
// caller's, with a child per step and compensation ("coord.step <step>",
// "coord.compensate <step>") carrying retry events; a step's context holds
// its span, so the store calls made with it (pgrepo, docrepo, otelpgx,
// redisotel, otelmongo) become its children. Run stores its trace context
// in the saga's record, in the insert it already makes, so that a recovery
// in another process starts "coord.Recover <definition>" linked to the
// original trace. Options.MeterProvider gets counters of sagas started,
// finished and recovered, step and saga duration histograms, the sagas in
// flight, and gauges of failed and dead sagas. coord imports the API only;
// with no provider installed it starts no span.
//
// See README.md in this directory for the state diagram, the exact
// guarantees and limits, the operator guide, the names and attributes of
// the spans and metrics (Observability), and the benchmark.
package coord
