package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// createUser: POST /users registers a user; 201 with the user and the id
// of their welcome conversation.
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

// patchUser: PATCH /users/{id} applies a partial update if If-Match still
// names the current version: 428 without If-Match, 412 when it is stale.
func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	version, err := ifMatchVersion(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var p chat.UserPatch
	if err := decodeJSON(w, r, h.maxBody, &p); err != nil {
		h.writeError(w, r, err)
		return
	}
	u, err := h.users.UpdateUser(r.Context(), id, version, p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(u.Version))
	writeJSON(w, http.StatusOK, u)
}

// deleteUser: DELETE /users/{id} removes the user and everything of theirs;
// 204.
func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.users.DeleteUser(r.Context(), id); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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

// ifMatchVersion reads the version from If-Match: `"3"` (as ETag gave it)
// or a bare 3.
func ifMatchVersion(r *http.Request) (int64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return 0, chat.Errorf(chat.CodePreconditionNeeded, "If-Match: required, with the version from the user's ETag")
	}
	v = strings.TrimSuffix(strings.TrimPrefix(v, `"`), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, chat.Errorf(chat.CodeInvalid, "If-Match: must be a version number such as \"1\"")
	}
	return n, nil
}
