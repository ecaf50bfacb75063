package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// decodeJSON reads r's body into v strictly: at most limit bytes (413), a
// JSON media type when Content-Type is set (415), valid UTF-8 (400: the
// decoder would silently turn bad bytes into U+FFFD), no unknown fields
// (400), exactly one JSON value and nothing after it (400), and no key twice
// in any object at any depth (400: encoding/json keeps the last, so
// {"username":"eve","username":"admin"} would register admin behind a
// check that read the first).
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
	return checkDuplicateKeys(body)
}

// checkDuplicateKeys returns a CodeInvalid error naming the first key that
// appears twice in one object of body, a single valid JSON value. Keys are
// compared the way encoding/json matches them to struct fields (ignoring
// case, with its Unicode folding), since "username" and "USERNAME" land in
// the same field just as two "username" do.
func checkDuplicateKeys(body []byte) error {
	var stack []*container
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // only the structure matters here
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return chat.Wrap(chat.CodeInvalid, err, describeJSONError(err))
		}
		var top *container
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.keys != nil && top.expectKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				valueDone(stack)
				continue
			}
			name, _ := tok.(string) // the decoder yields only strings where a key goes
			key := foldKey(name)
			if top.keys[key] {
				return chat.Errorf(chat.CodeInvalid, "duplicate key %q in a JSON object", name)
			}
			top.keys[key] = true
			top.expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &container{keys: map[string]bool{}, expectKey: true})
		case json.Delim('['):
			stack = append(stack, &container{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone(stack)
		default:
			valueDone(stack)
		}
	}
}

// container is an object or array being read by checkDuplicateKeys.
type container struct {
	keys      map[string]bool // the folded keys seen so far; nil for an array
	expectKey bool            // an object between values, where a key or '}' comes
}

// valueDone records that the innermost container of stack has read one
// more value: an object then expects its next key.
func valueDone(stack []*container) {
	if n := len(stack); n > 0 && stack[n-1].keys != nil {
		stack[n-1].expectKey = true
	}
}

// foldKey folds name as encoding/json does when it matches a key to a
// field: each rune to upper case after lower case, so "K" and the Kelvin
// sign, "S" and "ſ" fold alike.
func foldKey(name string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, name)
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
