package chat

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an error for the client. The HTTP layer maps each code to a
// status in one place (httpapi.statusOf); nothing else chooses statuses.
type Code string

// The application error codes.
const (
	CodeInvalid            Code = "invalid"             // malformed or invalid input
	CodeUnauthorized       Code = "unauthorized"        // no valid session, or wrong credentials
	CodeForbidden          Code = "forbidden"           // a valid session of another user
	CodeNotFound           Code = "not_found"           // no such resource
	CodeConflict           Code = "conflict"            // a unique field is taken
	CodePreconditionFailed Code = "precondition_failed" // stale version in If-Match
	CodePreconditionNeeded Code = "precondition_required"
	CodeTooLarge           Code = "too_large"         // request body over the limit
	CodeUnsupportedMedia   Code = "unsupported_media" // body that is not JSON
	CodeMethodNotAllowed   Code = "method_not_allowed"
	CodeRateLimited        Code = "rate_limited" // too many requests from one client
	CodeUnavailable        Code = "unavailable"  // a store is down
	CodeInternal           Code = "internal"     // a bug: never shown in detail
)

// Error is an error the client may see: a code and a message safe to show.
// Err keeps the cause (a store's error) for logs and errors.Is/As.
type Error struct {
	Code    Code
	Message string
	Err     error
	// RetryAfter, when positive, is how long the client should wait before
	// trying again (a CodeRateLimited answer's Retry-After).
	RetryAfter time.Duration
}

// Errorf returns an *Error with code and a formatted message. A %w verb in
// format makes the wrapped error the cause.
func Errorf(code Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), Err: errors.Unwrap(err)}
}

// Wrap returns an *Error with code and message whose cause is err.
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// Error returns the message, followed by the cause when there is one.
func (e *Error) Error() string {
	if e.Err != nil && e.Err.Error() != e.Message {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of the first *Error in err's chain, "" for nil
// and CodeInternal for any other error.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the message of the first *Error in err's chain, and a
// generic message for any other error, whose text may leak internals.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
