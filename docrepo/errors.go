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
	// empty update, a negative or impossible setting. ErrTypeMismatch is a
	// kind of it.
	ErrInvalid = errors.New("docrepo: invalid")
	// ErrTransactionsUnsupported means that the deployment has no
	// transactions (a standalone server, FerretDB): WithTransaction returns it
	// before running anything.
	ErrTransactionsUnsupported = errors.New("docrepo: transactions unsupported by this deployment")
	// ErrUnsupported means that the server does not implement a feature
	// that was asked for (FerretDB lacks TTL indexes, for one).
	ErrUnsupported = errors.New("docrepo: unsupported by the server")
	// ErrTypeMismatch means that the server refused an update because a
	// stored field holds a value of the wrong type for the operator: Push,
	// PushSlice, AddToSet or Pull on a field that is not an array (BSON null
	// included), Inc on one that is not a number. The message names the
	// field and says what it holds. It also matches ErrInvalid, and the
	// driver's mongo.WriteException stays reachable with errors.As.
	ErrTypeMismatch error = &typeMismatchError{}
)

// typeMismatchError is the dynamic type of ErrTypeMismatch: a kind of
// invalid input, so that code which only checks ErrInvalid still sees it.
type typeMismatchError struct{}

func (*typeMismatchError) Error() string { return "docrepo: type mismatch" }

// Is makes errors.Is(ErrTypeMismatch, ErrInvalid) hold.
func (*typeMismatchError) Is(target error) bool { return target == ErrInvalid }

// invalidf returns an error wrapping ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Server error codes that translate recognises.
const (
	codeBadValue              = 2
	codeTypeMismatch          = 14
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
	case isTypeMismatch(err):
		return typeMismatch(op, err, nil, "")
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

// The messages of the server's type-mismatch write errors, as MongoDB
// (code 2 BadValue for the array operators, code 14 TypeMismatch for $inc)
// and FerretDB 1.24 (the same codes and texts, with the type in quotes)
// write them:
//
//	The field 'tags' must be an array but is of type null in document {_id: ...}   ($push; FerretDB also for $addToSet)
//	Cannot apply $addToSet to non-array field. Field named 'tags' has non-array type null
//	Cannot apply $pull to a non-array value
//	Cannot apply $inc to a value of non-numeric type. {_id: ...} has the field 'n' of non-numeric type string
//
// BadValue covers much else, so it counts only with one of these texts.
var (
	mismatchMessage = regexp.MustCompile(`must be an array but is of type|Cannot apply \$\w+ to (a )?non-(array|numeric)`)
	mismatchField   = regexp.MustCompile(`(?i)field(?: named)? '([^']*)'`)
	mismatchType    = regexp.MustCompile(`(?:is of type|non-array type|non-numeric type) '?([A-Za-z]+)`)
)

// writeErrors returns the server's write errors in err.
func writeErrors(err error) []mongo.WriteError {
	var out []mongo.WriteError
	var we mongo.WriteException
	if errors.As(err, &we) {
		out = append(out, we.WriteErrors...)
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) {
		for _, e := range bwe.WriteErrors {
			out = append(out, e.WriteError)
		}
	}
	return out
}

// mismatchError returns the write error of err that reports a type
// mismatch.
func mismatchError(err error) (mongo.WriteError, bool) {
	for _, e := range writeErrors(err) {
		switch {
		case e.Code == codeTypeMismatch,
			e.Code == codeBadValue && mismatchMessage.MatchString(e.Message):
			return e, true
		}
	}
	return mongo.WriteError{}, false
}

func isTypeMismatch(err error) bool {
	_, ok := mismatchError(err)
	return ok
}

// typeMismatch wraps err in ErrTypeMismatch, naming the field from the
// server's message or, when the server does not name it ($pull), the
// candidates: the fields that the update applies an array operator to (or
// a number operator, when number is true). candidates may be nil. effect
// says what was written despite the error.
func typeMismatch(op string, err error, candidates func(number bool) []string, effect string) error {
	we, _ := mismatchError(err)
	want := "an array"
	if we.Code == codeTypeMismatch || strings.Contains(we.Message, "non-numeric") {
		want = "a number"
	}
	var fields []string
	if candidates != nil {
		fields = candidates(want == "a number")
	}
	what := "a field"
	if m := mismatchField.FindStringSubmatch(we.Message); m != nil {
		what = fmt.Sprintf("field %q", m[1])
	} else if len(fields) == 1 {
		what = fmt.Sprintf("field %q", fields[0])
	} else if len(fields) > 1 {
		what = fmt.Sprintf("one of the fields %q", fields)
	}
	holds := "a value of another type"
	if m := mismatchType.FindStringSubmatch(we.Message); m != nil {
		holds = m[1]
	}
	if effect == "" {
		effect = "nothing was written"
	}
	return fmt.Errorf("%w: %s: %s holds %s, not %s; %s: %w", ErrTypeMismatch, op, what, holds, want, effect, err)
}
