package chat

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Input limits. They are part of the API: the README lists them.
const (
	UsernameMinLen     = 3
	UsernameMaxLen     = 32
	EmailMaxLen        = 254 // RFC 5321's limit on a path
	PasswordMinLen     = 8
	PasswordMaxLen     = 72 // bcrypt ignores bytes past 72: refuse them rather than truncate
	TitleMaxLen        = 200
	MessageMaxLen      = 4000 // in characters (runes)
	DefaultLevel       = "A1"
	DefaultPageLimit   = 20
	MaxPageLimit       = 100
	defaultMessageRole = RoleUser
)

// levels are the CEFR levels.
var levels = map[string]bool{"A1": true, "A2": true, "B1": true, "B2": true, "C1": true, "C2": true}

// Validate checks nu, lower-cases its email and fills the default level.
// It returns a CodeInvalid error naming the first bad field.
func (nu *NewUser) Validate() error {
	if err := ValidateUsername(nu.Username); err != nil {
		return err
	}
	email, err := NormalizeEmail(nu.Email)
	if err != nil {
		return err
	}
	nu.Email = email
	if n := len(nu.Password); n < PasswordMinLen || n > PasswordMaxLen {
		return Errorf(CodeInvalid, "password: must be %d to %d bytes long", PasswordMinLen, PasswordMaxLen)
	}
	if err := ValidateLanguage(nu.Language); err != nil {
		return err
	}
	if nu.Level == "" {
		nu.Level = DefaultLevel
	}
	return ValidateLevel(nu.Level)
}

// Validate checks p and lower-cases its email. An empty patch is invalid:
// it would bump the version for nothing.
func (p *UserPatch) Validate() error {
	if p.Email == nil && p.Language == nil && p.Level == nil {
		return Errorf(CodeInvalid, "nothing to update: give email, language or level")
	}
	if p.Email != nil {
		email, err := NormalizeEmail(*p.Email)
		if err != nil {
			return err
		}
		p.Email = &email
	}
	if p.Language != nil {
		if err := ValidateLanguage(*p.Language); err != nil {
			return err
		}
	}
	if p.Level != nil {
		return ValidateLevel(*p.Level)
	}
	return nil
}

// Validate checks nc.
func (nc *NewConversation) Validate() error {
	return validateText("title", nc.Title, TitleMaxLen, false)
}

// Validate checks nm and fills the default role.
func (nm *NewMessage) Validate() error {
	if nm.Role == "" {
		nm.Role = defaultMessageRole
	}
	switch nm.Role {
	case RoleUser, RoleAssistant, RoleSystem:
	default:
		return Errorf(CodeInvalid, "role: must be %q, %q or %q", RoleUser, RoleAssistant, RoleSystem)
	}
	return validateText("content", nm.Content, MessageMaxLen, true)
}

// ValidateUsername accepts 3 to 32 lower-case ASCII letters, digits and
// underscores, starting with a letter. The narrow charset keeps usernames
// safe in URLs, logs and mentions, and makes look-alikes impossible.
func ValidateUsername(s string) error {
	if len(s) < UsernameMinLen || len(s) > UsernameMaxLen {
		return Errorf(CodeInvalid, "username: must be %d to %d characters long", UsernameMinLen, UsernameMaxLen)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || i > 0 && (r >= '0' && r <= '9' || r == '_')
		if !ok {
			return Errorf(CodeInvalid, "username: only a-z, 0-9 and _, starting with a letter")
		}
	}
	return nil
}

// NormalizeEmail checks that s is a bare address (no display name, no
// comments) and returns it lower-cased, so uniqueness ignores case.
func NormalizeEmail(s string) (string, error) {
	if s == "" || len(s) > EmailMaxLen {
		return "", Errorf(CodeInvalid, "email: must be 1 to %d bytes long", EmailMaxLen)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@'):], ".") {
		return "", Errorf(CodeInvalid, "email: not a valid address")
	}
	return strings.ToLower(s), nil
}

// ValidateLanguage accepts an ISO 639 language code of 2 or 3 lower-case
// letters, the primary subtag of a BCP 47 tag ("en", "fr", "yue").
func ValidateLanguage(s string) error {
	if len(s) < 2 || len(s) > 3 {
		return Errorf(CodeInvalid, "language: must be a 2 or 3 letter ISO 639 code such as \"en\"")
	}
	for _, r := range s {
		if r < 'a' || r > 'z' {
			return Errorf(CodeInvalid, "language: must be a 2 or 3 letter ISO 639 code such as \"en\"")
		}
	}
	return nil
}

// ValidateLevel accepts a CEFR level, A1 to C2.
func ValidateLevel(s string) error {
	if !levels[s] {
		return Errorf(CodeInvalid, "level: must be one of A1, A2, B1, B2, C1, C2")
	}
	return nil
}

// ValidatePageLimit accepts 1 to MaxPageLimit; 0 means DefaultPageLimit.
func ValidatePageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultPageLimit, nil
	case n < 0 || n > MaxPageLimit:
		return 0, Errorf(CodeInvalid, "limit: must be 1 to %d", MaxPageLimit)
	}
	return n, nil
}

// validateText checks free text: valid UTF-8, not blank, at most max
// characters, and no control characters other than newlines and tabs in
// multiline text. Anything else, SQL- or operator-shaped strings included,
// is data: the stores get it as a bound value, never as code.
func validateText(field, s string, max int, multiline bool) error {
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalid, "%s: not valid UTF-8", field)
	}
	if strings.TrimSpace(s) == "" {
		return Errorf(CodeInvalid, "%s: must not be empty", field)
	}
	if utf8.RuneCountInString(s) > max {
		return Errorf(CodeInvalid, "%s: must be at most %d characters", field, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			return Errorf(CodeInvalid, "%s: must not contain control characters", field)
		}
	}
	return nil
}
