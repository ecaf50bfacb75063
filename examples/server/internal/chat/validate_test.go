package chat_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

func TestNewUser_Validate(t *testing.T) {
	valid := func() chat.NewUser {
		return chat.NewUser{Username: "ada_l", Email: "Ada@Example.org", Password: "correct horse", Language: "en"}
	}
	tests := []struct {
		name   string
		change func(*chat.NewUser)
		field  string // "" when valid
	}{
		{"valid", func(*chat.NewUser) {}, ""},
		{"username too short", func(u *chat.NewUser) { u.Username = "ab" }, "username"},
		{"username too long", func(u *chat.NewUser) { u.Username = strings.Repeat("a", 33) }, "username"},
		{"username upper case", func(u *chat.NewUser) { u.Username = "Ada" }, "username"},
		{"username starts with digit", func(u *chat.NewUser) { u.Username = "1ada" }, "username"},
		{"username operator-shaped", func(u *chat.NewUser) { u.Username = "$ne" }, "username"},
		{"username SQL-shaped", func(u *chat.NewUser) { u.Username = "a'; DROP TABLE users;--" }, "username"},
		{"username non-ASCII look-alike", func(u *chat.NewUser) { u.Username = "аda" }, "username"}, // Cyrillic а
		{"email missing", func(u *chat.NewUser) { u.Email = "" }, "email"},
		{"email no at", func(u *chat.NewUser) { u.Email = "ada.example.org" }, "email"},
		{"email display name", func(u *chat.NewUser) { u.Email = "Ada <ada@example.org>" }, "email"},
		{"email no dot in domain", func(u *chat.NewUser) { u.Email = "ada@localhost" }, "email"},
		{"email too long", func(u *chat.NewUser) { u.Email = strings.Repeat("a", 250) + "@x.org" }, "email"},
		{"password too short", func(u *chat.NewUser) { u.Password = "1234567" }, "password"},
		{"password over bcrypt's 72 bytes", func(u *chat.NewUser) { u.Password = strings.Repeat("p", 73) }, "password"},
		{"language missing", func(u *chat.NewUser) { u.Language = "" }, "language"},
		{"language region tag", func(u *chat.NewUser) { u.Language = "en-GB" }, "language"},
		{"language upper case", func(u *chat.NewUser) { u.Language = "EN" }, "language"},
		{"level unknown", func(u *chat.NewUser) { u.Level = "D1" }, "level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nu := valid()
			tt.change(&nu)
			err := nu.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				assert.Equal(t, "ada@example.org", nu.Email, "email is lower-cased")
				assert.Equal(t, chat.DefaultLevel, nu.Level, "level defaults")
				return
			}
			require.Error(t, err)
			assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(err))
			assert.True(t, strings.HasPrefix(chat.ErrorMessage(err), tt.field+":"), "message %q names %s", chat.ErrorMessage(err), tt.field)
		})
	}
}

func TestUserPatch_Validate_EmptyPatchIsInvalid(t *testing.T) {
	var p chat.UserPatch
	assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(p.Validate()))
}

func TestNewMessage_Validate(t *testing.T) {
	tests := []struct {
		name    string
		msg     chat.NewMessage
		wantErr bool
	}{
		{"plain", chat.NewMessage{Content: "Bonjour !"}, false},
		{"multiline", chat.NewMessage{Role: chat.RoleAssistant, Content: "line 1\nline 2\ttab"}, false},
		{"SQL-shaped text is data", chat.NewMessage{Content: "'; DROP TABLE users; --"}, false},
		{"operator-shaped text is data", chat.NewMessage{Content: `{"$ne": ""}`}, false},
		{"longest", chat.NewMessage{Content: strings.Repeat("é", chat.MessageMaxLen)}, false},
		{"too long", chat.NewMessage{Content: strings.Repeat("é", chat.MessageMaxLen+1)}, true},
		{"blank", chat.NewMessage{Content: " \n "}, true},
		{"control character", chat.NewMessage{Content: "a\x00b"}, true},
		{"invalid UTF-8", chat.NewMessage{Content: "a\xffb"}, true},
		{"unknown role", chat.NewMessage{Role: "admin", Content: "hi"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.msg.Validate()
			if tt.wantErr {
				assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(err))
				return
			}
			require.NoError(t, err)
			assert.NotEmpty(t, tt.msg.Role, "role defaults")
		})
	}
}

func TestValidatePageLimit(t *testing.T) {
	for _, tt := range []struct {
		in, want int
		wantErr  bool
	}{{0, chat.DefaultPageLimit, false}, {1, 1, false}, {chat.MaxPageLimit, chat.MaxPageLimit, false}, {-1, 0, true}, {chat.MaxPageLimit + 1, 0, true}} {
		got, err := chat.ValidatePageLimit(tt.in)
		if tt.wantErr {
			assert.Equal(t, chat.CodeInvalid, chat.ErrorCode(err), "limit %d", tt.in)
			continue
		}
		assert.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}
}

func TestErrorCode_PlainErrorIsInternal(t *testing.T) {
	err := chat.Errorf(chat.CodeNotFound, "user not found")
	assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
	assert.Equal(t, chat.CodeInternal, chat.ErrorCode(assert.AnError))
	assert.Equal(t, "internal error", chat.ErrorMessage(assert.AnError), "a plain error's text is not shown")
}
