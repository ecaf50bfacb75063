package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// statuses maps every application error code to its HTTP status: the one
// place where statuses are chosen.
var statuses = map[chat.Code]int{
	chat.CodeInvalid:            http.StatusBadRequest,
	chat.CodeUnauthorized:       http.StatusUnauthorized,
	chat.CodeForbidden:          http.StatusForbidden,
	chat.CodeNotFound:           http.StatusNotFound,
	chat.CodeConflict:           http.StatusConflict,
	chat.CodePreconditionFailed: http.StatusPreconditionFailed,
	chat.CodePreconditionNeeded: http.StatusPreconditionRequired,
	chat.CodeTooLarge:           http.StatusRequestEntityTooLarge,
	chat.CodeUnsupportedMedia:   http.StatusUnsupportedMediaType,
	chat.CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	chat.CodeRateLimited:        http.StatusTooManyRequests,
	chat.CodeUnavailable:        http.StatusServiceUnavailable,
	chat.CodeInternal:           http.StatusInternalServerError,
}

// retryAfterUnavailable is the Retry-After of a 503: seconds, short, since
// a store that was restarting is usually back within them.
const retryAfterUnavailable = "2"

// statusOf returns the status for err's code; 500 for an unknown code.
func statusOf(err error) int {
	if s, ok := statuses[chat.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// errorBody is the body of every error response.
type errorBody struct {
	Error string    `json:"error"`
	Code  chat.Code `json:"code"`
}

// writeError answers with err's status and {"error", "code"}. Server-side
// errors are logged with their cause; the client sees only the message. A
// 503 says when to try again (Retry-After). A *chat.Pending is no failure:
// it answers 202 Accepted with the operation, whose URL is in Location.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var pending *chat.Pending
	if errors.As(err, &pending) {
		h.log.WarnContext(r.Context(), "operation left to recovery",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("operation", pending.Operation.ID), slog.Any("error", err))
		writeOperation(w, http.StatusAccepted, pending.Operation)
		return
	}
	status := statusOf(err)
	if status >= 500 && chat.ErrorCode(err) != chat.CodeUnavailable &&
		errors.Is(err, context.DeadlineExceeded) && errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		// The request's deadline, in an error nobody classified (a wait
		// cut short), is a store too slow to answer, not a bug. Any other
		// error stays a 500, whenever it came.
		msg := "a store did not answer in time"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			msg += "; whether the request took effect is unknown"
		}
		err = chat.Wrap(chat.CodeUnavailable, err, msg)
		status = http.StatusServiceUnavailable
	}
	switch status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfterUnavailable)
	case http.StatusUnauthorized:
		// RFC 9110 §11.6.1: a 401 names the scheme that would do; RFC 6750
		// §3.1: invalid_token when a token was sent and is no good.
		challenge := `Bearer realm="polystore-example"`
		if _, sent := r.Header["Authorization"]; sent {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	case http.StatusTooManyRequests:
		var e *chat.Error
		if errors.As(err, &e) && e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
		}
	}
	code := chat.ErrorCode(err)
	if status >= 500 {
		h.log.ErrorContext(r.Context(), "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("code", string(code)), slog.Any("error", err))
		if code != chat.CodeUnavailable {
			code = chat.CodeInternal // an unclassified error: show nothing of it
		}
	}
	writeJSON(w, status, errorBody{Error: chat.ErrorMessage(err), Code: code})
}
