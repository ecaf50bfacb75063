package docrepo

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// notFoundError is the dynamic type of ErrNotFound. Its NotFound method lets
// packages that must not import docrepo (cacherepo, for one) recognise a
// miss through a behaviour interface:
//
//	var nf interface{ NotFound() bool }
//	if errors.As(err, &nf) && nf.NotFound() { ... }
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// NotFound reports true: the error means that no document matched.
func (e *notFoundError) NotFound() bool { return true }

// Errors returned by this package, matched with errors.Is. Each is wrapped
// with the operation and, when the server or the driver caused it, the
// driver's error, which stays reachable with errors.As (mongo.WriteException,
// mongo.CommandError, mongo.BulkWriteException ...).
var (
	// ErrNotFound means that no document matched the id or the filter. Its
	// dynamic type has a method NotFound() bool that returns true, so that
	// code which does not import docrepo can recognise it.
	ErrNotFound error = &notFoundError{"docrepo: not found"}
	// ErrDuplicate means that a write broke a unique index (E11000). The
	// message names the index when the server does.
	ErrDuplicate = errors.New("docrepo: duplicate key")
	// ErrConflict means that the document changed since it was read: its
	// version field no longer holds the value that the write expected. An
	// index that exists with other options also gives ErrConflict.
	ErrConflict = errors.New("docrepo: conflict")
	// ErrInvalidID means that a string is not a valid ObjectID, or that a
	// document has a zero id of a type that the server cannot generate.
	ErrInvalidID = errors.New("docrepo: invalid id")
	// ErrInvalid means bad input: a field name or value that could act as an
	// operator, a malformed cursor token, a type that cannot be mapped, an
	// empty update.
	ErrInvalid = errors.New("docrepo: invalid")
	// ErrTransactionsUnsupported means that the deployment has no
	// transactions (a standalone server, FerretDB): WithTransaction returns it
	// before running anything.
	ErrTransactionsUnsupported = errors.New("docrepo: transactions unsupported by this deployment")
	// ErrUnsupported means that the server does not implement a feature
	// that was asked for (FerretDB lacks TTL indexes, for one).
	ErrUnsupported = errors.New("docrepo: unsupported by the server")
)

// invalidf returns an error wrapping ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Server error codes that mean "not implemented here".
const (
	codeCommandNotSupported   = 115
	codeNotImplemented        = 238
	codeIndexOptionsConflict  = 85
	codeIndexKeySpecsConflict = 86
)

var indexInMessage = regexp.MustCompile(`index: (\S+)`)

// duplicateIndex returns the name of the unique index that a duplicate key
// error names, or "" when the server does not name it (FerretDB does not).
func duplicateIndex(err error) string {
	var msgs []string
	var we mongo.WriteException
	if errors.As(err, &we) {
		for _, e := range we.WriteErrors {
			msgs = append(msgs, e.Message)
		}
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) {
		for _, e := range bwe.WriteErrors {
			msgs = append(msgs, e.Message)
		}
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		msgs = append(msgs, ce.Message)
	}
	msgs = append(msgs, err.Error())
	for _, m := range msgs {
		if sub := indexInMessage.FindStringSubmatch(m); sub != nil {
			return sub[1]
		}
	}
	return ""
}

func duplicateError(op string, err error) error {
	idx := duplicateIndex(err)
	if idx == "" {
		idx = "not named by the server"
	}
	return fmt.Errorf("%w (index %s): %s: %w", ErrDuplicate, idx, op, err)
}

func hasCode(err error, codes ...int) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}

// translate maps a driver error to this package's sentinels, keeping the
// driver's error in the chain. op names the operation for the message.
func translate(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return fmt.Errorf("%w: %s: %w", ErrNotFound, op, err)
	case mongo.IsDuplicateKeyError(err):
		return duplicateError(op, err)
	case hasCode(err, codeNotImplemented, codeCommandNotSupported):
		return fmt.Errorf("%w: %s: %w", ErrUnsupported, op, err)
	case hasCode(err, codeIndexOptionsConflict, codeIndexKeySpecsConflict):
		return fmt.Errorf("%w: %s: %w", ErrConflict, op, err)
	default:
		// Context errors too: errors.Is(err, context.Canceled) still holds.
		return fmt.Errorf("docrepo: %s: %w", op, err)
	}
}

// InsertFailure is one document that InsertMany could not insert.
type InsertFailure struct {
	// Index is the document's position in the slice given to InsertMany.
	Index int
	// Err is why: it matches ErrDuplicate for a unique index violation, and
	// reaches the driver's mongo.WriteError with errors.As.
	Err error
}

// InsertManyError reports the documents that InsertMany could not insert;
// every other document was inserted. errors.Is(err, ErrDuplicate) holds when
// any failure was a duplicate key, and errors.As reaches the driver's
// mongo.BulkWriteException.
type InsertManyError struct {
	// Inserted is how many documents were inserted.
	Inserted int
	// Failures lists the documents that were not, by index, in order.
	Failures []InsertFailure

	driver error
}

// Error lists the failures (the first ten, then a count).
func (e *InsertManyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "docrepo: insert many: %d inserted, %d failed:", e.Inserted, len(e.Failures))
	for i, f := range e.Failures {
		if i == 10 {
			fmt.Fprintf(&b, " ... and %d more", len(e.Failures)-10)
			break
		}
		fmt.Fprintf(&b, " [%d] %v;", f.Index, f.Err)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Unwrap returns each failure's error and the driver's error, so that
// errors.Is and errors.As see all of them.
func (e *InsertManyError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failures)+1)
	for _, f := range e.Failures {
		errs = append(errs, f.Err)
	}
	if e.driver != nil {
		errs = append(errs, e.driver)
	}
	return errs
}
