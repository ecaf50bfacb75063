package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// createUser: POST /users registers a user; 201 with the user and the id
// of their welcome conversation, only once both exist; 202 with the
// operation to poll when the registration is logged for recovery to finish
// (see writeError); 503 when nothing was done or the outcome is unknown.
func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	var nu chat.NewUser
	if err := decodeJSON(w, r, h.maxBody, &nu); err != nil {
		h.writeError(w, r, err)
		return
	}
	reg, err := h.users.Register(r.Context(), nu)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/users/"+reg.User.ID.String())
	w.Header().Set("ETag", etag(reg.User.Version))
	writeJSON(w, http.StatusCreated, reg)
}

// getUser: GET /users/{id} returns the profile, with its version as ETag.
func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	u, err := h.users.User(r.Context(), id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(u.Version))
	writeJSON(w, http.StatusOK, u)
}

// patchUser: PATCH /users/{id}, with the user's own session (401, 403
// first), applies a partial update if If-Match is "*"
// or names the current version (see ifMatch): 428 without If-Match, 412
// when it names no current version, 404 before that for an unknown user;
// 200 once the change is committed (the cache invalidated, or its
// invalidation durably logged), 202 with the operation to poll when
// recovery will finish it, 503 when nothing was done or the outcome is
// unknown.
func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.authorize(r, id); err != nil {
		h.writeError(w, r, err)
		return
	}
	cond, err := ifMatch(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var p chat.UserPatch
	if err := decodeJSON(w, r, h.maxBody, &p); err != nil {
		h.writeError(w, r, err)
		return
	}
	u, err := h.users.UpdateUser(r.Context(), id, cond, p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(u.Version))
	writeJSON(w, http.StatusOK, u)
}

// deleteUser: DELETE /users/{id}, with the user's own session (401, 403
// first), removes the user and everything of theirs;
// 204 once all of it is gone, 202 with the operation to poll when recovery
// will finish it, 503 when nothing was done or the outcome is unknown.
func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.authorize(r, id); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.users.DeleteUser(r.Context(), id); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// getOperation: GET /operations/{id...} returns a registration, update or
// deletion as the saga log has it: 200 with its status (pending,
// succeeded, compensated, failed), never cached; 400, 404.
func (h *Handler) getOperation(w http.ResponseWriter, r *http.Request) {
	op, err := h.users.Operation(r.Context(), r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeOperation(w, http.StatusOK, op)
}

// writeOperation answers with op: its URL in Location (202) or
// Content-Location (200), Retry-After while it is pending, and no caching,
// since its status changes.
func writeOperation(w http.ResponseWriter, status int, op *chat.Operation) {
	loc := "/operations/" + op.ID
	if status == http.StatusAccepted {
		w.Header().Set("Location", loc)
	} else {
		w.Header().Set("Content-Location", loc)
	}
	if op.Status == chat.OperationPending {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, op)
}

// userID parses the {id} path segment: a UUID in its canonical 36-character
// form (uuid.Parse also takes braces and urn: forms; one spelling per user
// keeps cache keys and logs unambiguous).
func userID(r *http.Request) (uuid.UUID, error) {
	s := r.PathValue("id")
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.UUID{}, chat.Errorf(chat.CodeInvalid, "user id: must be a UUID such as 0b6f7e1c-3d9a-4c4e-9b8e-2f1d5a7c9e10")
	}
	return id, nil
}

// etag renders a version as a strong entity tag.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch reads If-Match (RFC 9110 §13.1.1) into the condition an update
// must meet:
//
//   - absent or empty: CodePreconditionNeeded (428), since an update without
//     a version would overwrite changes the client never saw;
//   - "*": any current version;
//   - a list of entity tags, over one or several header lines: the versions
//     of its strong tags. A weak tag (W/"2") never matches, If-Match using
//     the strong comparison, and neither does a strong tag that is not one
//     of our ETags ("two", "01"): the update then fails with 412;
//   - a bare version (3), which earlier versions of this API accepted;
//   - anything else (an unquoted or unterminated tag, "*" in a list, a
//     character an entity tag cannot hold): CodeInvalid (400).
func ifMatch(r *http.Request) (chat.Precondition, error) {
	v := strings.TrimSpace(strings.Join(r.Header.Values("If-Match"), ","))
	if v == "" {
		return chat.Precondition{}, chat.Errorf(chat.CodePreconditionNeeded, "If-Match: required, with the version from the user's ETag")
	}
	if v == "*" {
		return chat.Precondition{Any: true}, nil
	}
	if n, ok := version(v); ok {
		return chat.Precondition{Versions: []int64{n}}, nil
	}
	var cond chat.Precondition
	for rest := v; ; {
		rest = strings.TrimLeft(rest, " \t,") // a list may hold empty elements
		if rest == "" {
			return cond, nil
		}
		weak := strings.HasPrefix(rest, "W/")
		if weak {
			rest = rest[2:]
		}
		tag, after, ok := opaqueTag(rest)
		if !ok {
			return chat.Precondition{}, chat.Errorf(chat.CodeInvalid, `If-Match: must be "*" or entity tags such as "1", as ETag gives them`)
		}
		if n, ok := version(tag); ok && !weak {
			cond.Versions = append(cond.Versions, n)
		}
		rest = strings.TrimLeft(after, " \t")
		if rest != "" && rest[0] != ',' {
			return chat.Precondition{}, chat.Errorf(chat.CodeInvalid, `If-Match: entity tags must be separated by commas`)
		}
	}
}

// opaqueTag reads a quoted opaque-tag at the start of s and returns its
// content and what follows it; ok is false unless s starts with one.
func opaqueTag(s string) (tag, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[1:i], s[i+1:], true
		case c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80: // etagc
		default:
			return "", "", false
		}
	}
	return "", "", false // no closing quote
}

// version parses s as a version as etag writes it: a decimal number of at
// least 1, without sign or leading zeros, so that only the tags this API
// gives out match (strong comparison is character by character).
func version(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != s {
		return 0, false
	}
	return n, true
}
