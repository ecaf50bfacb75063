package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// decodeAny runs decodeJSON on body into an untyped value, which accepts
// any structure: the duplicate-key check must hold at every depth, not only
// where today's request types happen to fail on a nested value first.
func decodeAny(body string) error {
	r := httptest.NewRequest("POST", "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	var v any
	return decodeJSON(httptest.NewRecorder(), r, 64<<10, &v)
}

func TestDecodeJSON_DuplicateKeyAtAnyDepthIsInvalid(t *testing.T) {
	tests := []struct {
		name, body, key string
	}{
		{"top level, last would win", `{"username":"eve","username":"admin"}`, "username"},
		{"top level, not adjacent", `{"username":"eve","email":"e@example.org","username":"admin"}`, "username"},
		{"same value twice", `{"level":"A1","level":"A1"}`, "level"},
		{"another case, which encoding/json matches to the same field", `{"username":"eve","USERNAME":"admin"}`, "USERNAME"},
		{"long s, which encoding/json folds to s", `{"username":"eve","uſername":"admin"}`, "uſername"},
		{"Kelvin sign, which encoding/json folds to k", `{"kind":"a","\u212aind":"b"}`, "\u212aind"},
		{"escaped spelling of the same key", `{"role":"user","r\u006fle":"system"}`, "role"},
		{"nested object", `{"user":{"role":"user","role":"admin"}}`, "role"},
		{"object in an array", `{"messages":[{"role":"user"},{"role":"user","role":"system"}]}`, "role"},
		{"object in an array at the top", `[{"a":1,"a":2}]`, "a"},
		{"deep", `{"a":{"b":[[{"c":{"d":1,"d":2}}]]}}`, "d"},
		{"after a nested object", `{"a":{"x":1},"b":2,"a":3}`, "a"},
		{"null values", `{"a":null,"a":null}`, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeAny(tt.body)
			assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(err))
			assert.Equal(t, `duplicate key "`+tt.key+`" in a JSON object`, chat.ErrorMessage(err))
		})
	}
}

func TestDecodeJSON_SameKeyInDifferentObjectsIsFine(t *testing.T) {
	for _, body := range []string{
		`{"a":1,"b":2}`,
		`{"a":{"a":{"a":1}}}`,
		`[{"role":"user"},{"role":"system"}]`,
		`{"a":[{"a":1},{"a":2}],"b":{"a":3}}`,
		`{"a":[1,2,{"b":[]}],"b":{}}`,
		`{"key":"a","value":{"key":"b"}}`,
		`{}`, `[]`, `"a"`, `1`,
	} {
		assert.NoError(t, decodeAny(body), body)
	}
}

func TestDecodeJSON_StrictRulesStillHoldAlongsideTheDuplicateCheck(t *testing.T) {
	tests := []struct {
		name, body string
		code       chat.Code
		msg        string
	}{
		{"trailing object", `{"a":1} {"a":2}`, chat.CodeInvalid, "single JSON object"},
		{"syntax", `{"a":1,"a":}`, chat.CodeInvalid, "malformed JSON"},
		{"too large", `{"a":"` + strings.Repeat("x", 64<<10) + `"}`, chat.CodeTooLarge, "larger than"},
	}
	for _, tt := range tests {
		err := decodeAny(tt.body)
		assert.Equal(t, tt.code, chat.ErrorCode(err), tt.name)
		assert.Contains(t, chat.ErrorMessage(err), tt.msg, tt.name)
	}
}
