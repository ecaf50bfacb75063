package pgrepo

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// notFoundError is the dynamic type of ErrNotFound. Its NotFound method lets
// packages that must not import pgrepo (cacherepo, for one) recognise a
// missing row through the interface{ NotFound() bool } behaviour.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// NotFound reports that the error means "no such row".
func (e *notFoundError) NotFound() bool { return true }

// kindError is a sentinel that is also a more general one: ErrInvalidColumn
// and ErrInvalidCursor are both ErrInvalid.
type kindError struct {
	msg    string
	parent error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.parent }

var (
	// ErrNotFound means that no (visible) row has the given primary key, or
	// that a query expected one row and found none. Its dynamic type has a
	// method NotFound() bool that returns true, so code that cannot import
	// pgrepo recognises it with errors.As and interface{ NotFound() bool }.
	ErrNotFound error = &notFoundError{"pgrepo: not found"}

	// ErrConflict means that an optimistic-locking write lost: the row
	// exists but its version is no longer the one the caller read.
	ErrConflict = errors.New("pgrepo: version conflict")

	// ErrDuplicate means that a unique or primary-key constraint was violated
	// (SQLSTATE 23505). The message names the constraint; the
	// *pgconn.PgError stays reachable with errors.As.
	ErrDuplicate = errors.New("pgrepo: duplicate key")

	// ErrForeignKey means that a foreign-key constraint was violated
	// (SQLSTATE 23503). The *pgconn.PgError stays reachable with errors.As.
	ErrForeignKey = errors.New("pgrepo: foreign key violation")

	// ErrCheck means that a check constraint was violated (SQLSTATE 23514).
	// The *pgconn.PgError stays reachable with errors.As.
	ErrCheck = errors.New("pgrepo: check constraint violation")

	// ErrInvalid means that the caller's input cannot be used: a struct
	// type that does not describe a table, a bad argument, a bad query.
	ErrInvalid = errors.New("pgrepo: invalid input")

	// ErrInvalidColumn means that a column name is not one the repository's
	// table description has, or cannot be used where it was given (for
	// instance patching the primary key). The name never reaches SQL.
	// errors.Is(err, ErrInvalid) also holds.
	ErrInvalidColumn error = &kindError{"pgrepo: invalid column", ErrInvalid}

	// ErrInvalidCursor means that a keyset cursor was not produced by the
	// same repository and ordering, or was altered. errors.Is(err,
	// ErrInvalid) also holds.
	ErrInvalidCursor error = &kindError{"pgrepo: invalid cursor", ErrInvalid}

	// ErrNotNull means that a write put NULL (a nil pointer, a nil map
	// value) into a NOT NULL column (SQLSTATE 23502). The message names
	// the column; the statement wrote nothing; the *pgconn.PgError stays
	// reachable with errors.As. errors.Is(err, ErrInvalid) also holds.
	ErrNotNull error = &kindError{"pgrepo: null value in a NOT NULL column", ErrInvalid}

	// ErrInvalidValue means that a value does not fit its column's type:
	// text that does not parse as the type (SQLSTATE 22P02, such as "x" for
	// an integer), a number out of the type's range (22003), a string
	// longer than the column allows (22001), or any other data exception
	// (class 22); also a value pgx itself cannot encode for the column (an
	// int64 above the range of an integer column), which never reaches the
	// server. The message names the column where PostgreSQL or pgx says
	// which one it is (a bind parameter of the statement, a COPY column),
	// else says that it does not know. The statement wrote nothing. The
	// *pgconn.PgError (or pgx's encoding error) stays reachable with
	// errors.As. errors.Is(err, ErrInvalid) also holds.
	ErrInvalidValue error = &kindError{"pgrepo: invalid value", ErrInvalid}
)

// SQLSTATE codes translated at the package boundary.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeCheckViolation       = "23514"
	codeNotNullViolation     = "23502"
	classDataException       = "22"
	codeQueryCanceled        = "57014"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// translate maps driver errors to the package's sentinels, keeping the
// original error reachable. what names the operation and table for the
// message.
func translate(what string, err error) error {
	return translateParams(what, err, nil)
}

var (
	// PostgreSQL's context for an error while reading a bind parameter.
	paramContext = regexp.MustCompile(`parameter \$([0-9]+)`)
	// pgx's error for an argument it cannot encode for the parameter's type.
	encodeFailure = regexp.MustCompile(`^failed to encode args\[([0-9]+)\]`)
	// PostgreSQL's context for an error in a COPY row.
	copyContext = regexp.MustCompile(`^COPY .*, line ([0-9]+)(?:, column (.*))?$`)
)

// translateParams is translate for a statement whose bind parameters $1,
// $2, ... hold the columns params names (nil when unknown), so that a value
// error can name its column.
func translateParams(what string, err error, params []string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		if m := encodeFailure.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return fmt.Errorf("%s: %w %s (not sent to the server): %w", what, ErrInvalidValue, paramColumn(params, n+1), err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	var sentinel error
	switch pgErr.Code {
	case codeUniqueViolation:
		sentinel = ErrDuplicate
	case codeForeignKeyViolation:
		sentinel = ErrForeignKey
	case codeCheckViolation:
		sentinel = ErrCheck
	case codeNotNullViolation:
		col := "a column PostgreSQL does not name" // a NOT NULL domain, for one
		if pgErr.ColumnName != "" {
			col = strconv.Quote(pgErr.ColumnName)
		}
		return fmt.Errorf("%s: %w: column %s (nothing written): %w", what, ErrNotNull, col, err)
	case codeQueryCanceled:
		// pgx ends a COPY whose row it cannot encode with CopyFail, which
		// PostgreSQL answers with 57014 quoting pgx's message.
		if strings.HasPrefix(pgErr.Message, "COPY from stdin failed: unable to encode") {
			return fmt.Errorf("%s: %w (nothing written): %w", what, ErrInvalidValue, err)
		}
	}
	if sentinel != nil {
		return fmt.Errorf("%s: %w on constraint %q: %w", what, sentinel, pgErr.ConstraintName, err)
	}
	if strings.HasPrefix(pgErr.Code, classDataException) {
		return fmt.Errorf("%s: %w %s (nothing written): %w", what, ErrInvalidValue, valueColumn(pgErr, params), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// valueColumn says which column a data exception is about, as far as
// PostgreSQL tells.
func valueColumn(pgErr *pgconn.PgError, params []string) string {
	if pgErr.ColumnName != "" {
		return fmt.Sprintf("for column %q", pgErr.ColumnName)
	}
	if m := copyContext.FindStringSubmatch(pgErr.Where); m != nil {
		if m[2] != "" {
			return fmt.Sprintf("for column %q in row %s", m[2], m[1])
		}
		return "in row " + m[1] + " (PostgreSQL does not say which column)"
	}
	if m := paramContext.FindStringSubmatch(pgErr.Where); m != nil {
		n, _ := strconv.Atoi(m[1])
		return paramColumn(params, n)
	}
	return "for a value (PostgreSQL does not say which column)"
}

// paramColumn names the column of bind parameter $n.
func paramColumn(params []string, n int) string {
	if n >= 1 && n <= len(params) && params[n-1] != "" {
		return fmt.Sprintf("for column %q", params[n-1])
	}
	return fmt.Sprintf("for parameter $%d", n)
}

// retryable reports whether err is a serialization failure or a deadlock,
// after which running the whole transaction again can succeed.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == codeSerializationFailure || pgErr.Code == codeDeadlockDetected
}
