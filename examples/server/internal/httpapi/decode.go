package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// decodeJSON reads r's body into v strictly: at most limit bytes (413), a
// JSON media type when Content-Type is set (415), valid UTF-8 (400: the
// decoder would silently turn bad bytes into U+FFFD), no unknown fields
// (400), exactly one JSON value and nothing after it (400).
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return chat.Errorf(chat.CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return chat.Errorf(chat.CodeTooLarge, "request body is larger than %d bytes", limit)
		}
		return chat.Wrap(chat.CodeInvalid, err, "could not read the request body")
	}
	if !utf8.Valid(body) {
		return chat.Errorf(chat.CodeInvalid, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return chat.Wrap(chat.CodeInvalid, err, describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return chat.Errorf(chat.CodeInvalid, "request body must hold a single JSON object")
	}
	return nil
}

// describeJSONError turns a decoding error into a message for the client
// that names the field or offset, without echoing the input back.
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "request body is empty"
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end"
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be a JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		}
		return "request body must be a JSON object"
	}
	// encoding/json reports unknown fields only as text: `json: unknown field "x"`.
	const prefix = "json: "
	if msg := err.Error(); len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return "malformed JSON"
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "ptr", "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	}
	return "number"
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// An error here means the client went away: nothing left to tell it.
	_ = json.NewEncoder(w).Encode(v)
}
