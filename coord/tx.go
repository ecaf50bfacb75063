package coord

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tx is the PostgreSQL transaction a TxAction or TxCompensate runs in: the
// coordinator's own, whose commit also writes the step's log record. It is
// the querying part of pgx.Tx (which satisfies it too); the coordinator
// begins, commits and rolls it back, so a step must not.
type Tx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error)
}

// stmt is one statement of the coordinator's own, queued in a batch; when
// scan is set, its one row is scanned into it. zero is the error that a
// division by zero in it means (nil: ErrLeaseLost, see logError).
type stmt struct {
	sql  string
	args []any
	scan []any
	zero error
}

// result reads the result of s from br, translating its errors.
func (s *stmt) result(br pgx.BatchResults) error {
	var err error
	if s.scan != nil {
		err = br.QueryRow().Scan(s.scan...)
	} else {
		_, err = br.Exec()
	}
	if err != nil && s.zero != nil && divisionByZero(err) {
		return s.zero
	}
	return logError(err)
}

// stepTx is the transaction of a TxAction or TxCompensate. It is begun
// lazily: BEGIN and the coordinator's opening statements travel in one batch
// with the step's first statement, and the closing statements with COMMIT,
// so the log costs the step one round trip, the commit's.
type stepTx struct {
	conn   *pgxpool.Conn
	prefix []stmt
	tx     pgx.Tx // nil until begun
	open   func() // closes what a first Query or SendBatch left open
	err    error  // from the coordinator's own statements; ends the transaction

	// b is the batch being sent, reused by the next one (a batch's results
	// are closed before the next is sent: closeOpen), and queued backs its
	// queries: one allocation fewer per batch and none for its growth in
	// the usual shapes (BEGIN, the opening statements and the step's first;
	// the closing ones and COMMIT).
	b      pgx.Batch
	queued [6]*pgx.QueuedQuery

	// atCommit are the statements ExecAtCommit queued, sent with COMMIT;
	// atCommitBuf backs the usual few.
	atCommit    []stmt
	atCommitBuf [2]stmt
}

// ExecAtCommit queues sql for the transaction of the TxAction or
// TxCompensate that tx is given to: it runs after the step returns nil, in
// the round trip of the step's COMMIT, before the step's log record. It is
// for writes whose result the step does not need; a step made only of them
// costs one round trip, which carries BEGIN, the writes, the log record and
// COMMIT (a step that runs a statement itself costs one more).
//
// The statements run in the order queued, after every statement the step
// ran itself, under the step's context. An error of one (the server's, or
// pgx's when it cannot encode the arguments) fails the step's try as if
// the step had returned it: the transaction rolls back and nothing of it
// takes effect, the retry policy applies, and the driver's error stays
// reachable with errors.As. When the step returns an error or panics, the
// queued statements never run. args are kept until then, so the step must
// not change them.
//
// For a Tx that is not a step's (a pgx.Tx, in a test of the step's
// function), it runs sql at once. It returns an error wrapping ErrInvalid
// for a nil tx or an empty sql.
func ExecAtCommit(ctx context.Context, tx Tx, sql string, args ...any) error {
	if tx == nil || sql == "" {
		return fmt.Errorf("%w: ExecAtCommit needs a Tx and a statement", ErrInvalid)
	}
	t, ok := tx.(*stepTx)
	if !ok {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}
	if t.err != nil {
		return t.err
	}
	if t.atCommit == nil {
		t.atCommit = t.atCommitBuf[:0]
	}
	t.atCommit = append(t.atCommit, stmt{sql: sql, args: args})
	return nil
}

var _ Tx = (*stepTx)(nil)

func beginStepTx(ctx context.Context, pool *pgxpool.Pool, prefix ...stmt) (*stepTx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &stepTx{conn: conn, prefix: prefix}, nil
}

// batch returns a batch that begins the transaction with the prefix, when it
// has not begun yet.
func (t *stepTx) batch() *pgx.Batch {
	b := t.emptyBatch()
	b.BeginTx(pgx.TxOptions{})
	for _, s := range t.prefix {
		b.Queue(s.sql, s.args...)
	}
	return b
}

// emptyBatch returns t's batch emptied, for the next round trip.
func (t *stepTx) emptyBatch() *pgx.Batch {
	clear(t.queued[:])
	t.b = pgx.Batch{QueuedQueries: t.queued[:0]}
	return &t.b
}

// send sends b, which batch began, and reads the results of BEGIN and the
// prefix, leaving those of the statements the step queued after them.
func (t *stepTx) send(ctx context.Context, b *pgx.Batch) (pgx.BatchResults, error) {
	br := t.conn.SendBatch(ctx, b)
	t.tx = br.Tx()
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, err
	}
	for i := range t.prefix {
		if err := t.prefix[i].result(br); err != nil {
			_ = br.Close()
			t.err = err
			return nil, t.err
		}
	}
	return br, nil
}

// closeOpen closes the rows of a first Query the step left open, so the
// connection can be used again.
func (t *stepTx) closeOpen() {
	if t.open != nil {
		t.open()
		t.open = nil
	}
}

// Exec implements Tx.
func (t *stepTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.err != nil {
		return pgconn.CommandTag{}, t.err
	}
	t.closeOpen()
	if t.tx != nil {
		return t.tx.Exec(ctx, sql, args...)
	}
	b := t.batch()
	b.Queue(sql, args...)
	br, err := t.send(ctx, b)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// Query implements Tx.
func (t *stepTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.err != nil {
		return nil, t.err
	}
	t.closeOpen()
	if t.tx != nil {
		return t.tx.Query(ctx, sql, args...)
	}
	b := t.batch()
	b.Queue(sql, args...)
	br, err := t.send(ctx, b)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	br2 := &batchRows{Rows: rows, br: br}
	t.open = br2.Close
	return br2, nil
}

// QueryRow implements Tx.
func (t *stepTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := t.Query(ctx, sql, args...)
	return &row{rows: rows, err: err}
}

// SendBatch implements Tx.
func (t *stepTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.err != nil {
		return pgx.FailedBatchResults(b, t.err)
	}
	t.closeOpen()
	if t.tx != nil {
		return t.tx.SendBatch(ctx, b)
	}
	first := t.batch()
	first.QueuedQueries = append(first.QueuedQueries, b.QueuedQueries...)
	br, err := t.send(ctx, first)
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	t.open = func() { _ = br.Close() }
	return br
}

// CopyFrom implements Tx. COPY cannot travel in a batch, so when it is the
// step's first statement, BEGIN and the opening statements cost a round
// trip of their own.
func (t *stepTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error) {
	if t.err != nil {
		return 0, t.err
	}
	t.closeOpen()
	if t.tx == nil {
		br, err := t.send(ctx, t.batch())
		if err != nil {
			return 0, err
		}
		if err := br.Close(); err != nil {
			return 0, err
		}
	}
	return t.tx.CopyFrom(ctx, table, columns, rows)
}

// commit sends the closing statements and COMMIT in one round trip; when the
// step ran no statement, BEGIN and the opening ones go with them.
func (t *stepTx) commit(ctx context.Context, suffix ...stmt) error {
	if t.err != nil {
		return t.err
	}
	t.closeOpen()
	var b *pgx.Batch
	skip := 0
	if t.tx == nil {
		b = t.batch()
		skip = 1 + len(t.prefix)
	} else {
		b = t.emptyBatch()
	}
	for _, s := range t.atCommit {
		b.Queue(s.sql, s.args...)
	}
	for _, s := range suffix {
		b.Queue(s.sql, s.args...)
	}
	b.Queue("commit")

	began := t.tx == nil
	var br pgx.BatchResults
	if began {
		br = t.conn.SendBatch(ctx, b)
		t.tx = br.Tx()
	} else {
		br = t.tx.SendBatch(ctx, b)
	}
	defer br.Close()
	if skip > 0 { // BEGIN
		if _, err := br.Exec(); err != nil {
			return err
		}
		for i := range t.prefix {
			if err := t.prefix[i].result(br); err != nil {
				t.err = err
				return err
			}
		}
	}
	for range t.atCommit {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("coord: statement queued with ExecAtCommit: %w", err)
		}
	}
	for i := range suffix {
		if err := suffix[i].result(br); err != nil {
			return err
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return br.Close()
}

// release rolls back whatever is still open and returns the connection to
// the pool, which discards it if it is still inside a transaction.
func (t *stepTx) release(ctx context.Context) {
	t.closeOpen()
	if t.conn.Conn().PgConn().TxStatus() != 'I' && !t.conn.Conn().IsClosed() {
		_, _ = t.conn.Exec(context.WithoutCancel(ctx), "rollback")
	}
	t.conn.Release()
}

// batchRows are the rows of a query sent in a batch; closing them closes the
// batch.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

// row is pgx.Row on top of Query, as pgx builds its own.
type row struct {
	rows pgx.Rows
	err  error
}

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

// logError translates the errors of the coordinator's own log statements.
func logError(err error) error {
	if divisionByZero(err) { // the lease check divides by the rows it updated
		return fmt.Errorf("%w: %w", ErrLeaseLost, err)
	}
	return err
}

// divisionByZero reports whether err is PostgreSQL's division by zero, the
// way the log's statements fail when the row they need is not there.
func divisionByZero(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22012"
}
