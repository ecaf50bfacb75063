package httpapi

import (
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// maxTokenLen bounds what is read from Authorization before the session
// store sees it: the store's tokens are 52 bytes; anything much longer is
// refused without a look.
const maxTokenLen = 256

// bearerToken returns the token of "Authorization: Bearer <token>" (RFC
// 6750 §2.1: the scheme in any case, one space, then the token).
// CodeUnauthorized when the header is missing, given twice, of another
// scheme, or holds anything a token cannot (spaces, tabs, commas), so that
// " tok", "tok " or "tok tok" are never trimmed into a valid token.
func bearerToken(r *http.Request) (string, error) {
	vs := r.Header.Values("Authorization")
	if len(vs) == 0 {
		return "", chat.Errorf(chat.CodeUnauthorized, "Authorization: required, as Bearer and the token POST /sessions returned")
	}
	bad := chat.Errorf(chat.CodeUnauthorized, "Authorization: must be Bearer and one token")
	if len(vs) > 1 {
		return "", bad
	}
	scheme, token, ok := strings.Cut(vs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > maxTokenLen {
		return "", bad
	}
	for i := 0; i < len(token); i++ {
		// b64token (RFC 6750 §2.1): ALPHA DIGIT - . _ ~ + / then '='s.
		c := token[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return "", bad
		}
	}
	return token, nil
}

// caller returns the user whose session the request carries:
// CodeUnauthorized without a valid one, CodeUnavailable when the session
// store cannot answer (a Redis outage is not the client's fault: 503, not
// 401, so that clients do not throw away a good token).
func (h *Handler) caller(r *http.Request) (uuid.UUID, error) {
	token, err := bearerToken(r)
	if err != nil {
		return uuid.UUID{}, err
	}
	return h.sessions.Authenticate(r.Context(), token)
}

// authorize checks that the request carries the session of user id:
// CodeUnauthorized, CodeForbidden (another user's session), CodeUnavailable.
func (h *Handler) authorize(r *http.Request, id uuid.UUID) error {
	who, err := h.caller(r)
	if err != nil {
		return err
	}
	if who != id {
		return chat.Errorf(chat.CodeForbidden, "this session is another user's")
	}
	return nil
}

// createSession: POST /sessions logs in with a username or an email and a
// password: 201 with the token, which is shown only this once; 400, 401
// (unknown account or wrong password, the same answer), 429 with
// Retry-After after too many failures for the account or the client, 503.
func (h *Handler) createSession(w http.ResponseWriter, r *http.Request) {
	var c chat.Credentials
	if err := decodeJSON(w, r, h.maxBody, &c); err != nil {
		h.writeError(w, r, err)
		return
	}
	s, err := h.sessions.Login(r.Context(), clientKey(r), c)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // RFC 6749 §5.1: a token is never cached
	writeJSON(w, http.StatusCreated, s)
}

// deleteSession: DELETE /sessions/current logs out the session the request
// carries: 204; 401, 503.
func (h *Handler) deleteSession(w http.ResponseWriter, r *http.Request) {
	token, err := bearerToken(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.sessions.Logout(r.Context(), token); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
