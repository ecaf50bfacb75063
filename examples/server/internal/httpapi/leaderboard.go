package httpapi

import (
	"net/http"
	"strconv"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// addXP: POST /users/{id}/xp adds {"points": n} (1 to 1000) to the user's
// weekly total, for the user only: 200 with the total; 400, 401, 403, 404,
// 503.
func (h *Handler) addXP(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.authorize(r, id); err != nil {
		h.writeError(w, r, err)
		return
	}
	var g chat.XPGain
	if err := decodeJSON(w, r, h.maxBody, &g); err != nil {
		h.writeError(w, r, err)
		return
	}
	total, err := h.leaderboard.AddXP(r.Context(), id, g)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, total)
}

// getLeaderboard: GET /leaderboard?limit=&cursor= returns a page of this
// week's board, highest XP first, with usernames; public.
func (h *Handler) getLeaderboard(w http.ResponseWriter, r *http.Request) {
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
	page, err := h.leaderboard.Leaderboard(r.Context(), limit, cursor)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}
