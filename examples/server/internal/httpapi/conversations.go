package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// createConversation: POST /users/{id}/conversations starts a conversation
// of the user, with their session; 201; 401, 403 before anything else.
func (h *Handler) createConversation(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.authorize(r, id); err != nil {
		h.writeError(w, r, err)
		return
	}
	var nc chat.NewConversation
	if err := decodeJSON(w, r, h.maxBody, &nc); err != nil {
		h.writeError(w, r, err)
		return
	}
	c, err := h.conversations.CreateConversation(r.Context(), id, nc)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/conversations/"+c.ID)
	writeJSON(w, http.StatusCreated, c)
}

// appendMessage: POST /conversations/{id}/messages appends a message to a
// conversation of the session's user; 201 with the conversation; 401
// before anything else, 403 when the conversation is another user's.
func (h *Handler) appendMessage(w http.ResponseWriter, r *http.Request) {
	who, err := h.caller(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var nm chat.NewMessage
	if err := decodeJSON(w, r, h.maxBody, &nm); err != nil {
		h.writeError(w, r, err)
		return
	}
	c, err := h.conversations.AppendMessage(r.Context(), who, r.PathValue("id"), nm)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

// listConversations: GET /users/{id}/conversations?limit=&cursor= returns
// a page of the user's conversations, most recently updated first, to the
// user only (401, 403 before anything else).
func (h *Handler) listConversations(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.authorize(r, id); err != nil {
		h.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	limitParam, err := singleParam(q, "limit")
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	cursor, err := singleParam(q, "cursor")
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	limit := 0
	if limitParam != "" {
		if limit, err = strconv.Atoi(limitParam); err != nil || limit < 1 {
			h.writeError(w, r, chat.Errorf(chat.CodeInvalid, "limit: must be a number from 1 to %d", chat.MaxPageLimit))
			return
		}
	}
	page, err := h.conversations.Conversations(r.Context(), id, limit, cursor)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// singleParam returns the query parameter name, "" when absent, and a
// CodeInvalid error naming it when it is given more than once: picking one
// of ?limit=1&limit=1000 silently would let a proxy and the server read
// different requests.
func singleParam(q url.Values, name string) (string, error) {
	vs := q[name]
	if len(vs) > 1 {
		return "", chat.Errorf(chat.CodeInvalid, "%s: given %d times; give it at most once", name, len(vs))
	}
	if len(vs) == 0 {
		return "", nil
	}
	return vs[0], nil
}
