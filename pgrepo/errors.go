package pgrepo

import (
	"errors"
	"fmt"

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
)

// SQLSTATE codes translated at the package boundary.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeCheckViolation       = "23514"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// translate maps driver errors to the package's sentinels, keeping the
// original error reachable. what names the operation and table for the
// message.
func translate(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		var sentinel error
		switch pgErr.Code {
		case codeUniqueViolation:
			sentinel = ErrDuplicate
		case codeForeignKeyViolation:
			sentinel = ErrForeignKey
		case codeCheckViolation:
			sentinel = ErrCheck
		}
		if sentinel != nil {
			return fmt.Errorf("%s: %w on constraint %q: %w", what, sentinel, pgErr.ConstraintName, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
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
