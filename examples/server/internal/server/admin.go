package server

import (
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/coord/coordhttp"
)

// adminRealm is the HTTP Basic realm of the saga console: with it in
// WWW-Authenticate, a browser asks for the credentials itself.
const adminRealm = `Basic realm="sagas"`

// adminConsole returns the saga console of c behind HTTP Basic
// authentication: any user name (recorded in the history as the operator;
// "admin" when empty) and token as the password, compared in constant
// time. Basic rather than a bearer token so that a browser can open the
// console without anything in front of it; a Basic password is sent with
// every request, so serve /admin/ over TLS beyond loopback.
func adminConsole(c *coord.Coordinator, token string, readOnly bool) (http.Handler, error) {
	console, err := coordhttp.New(c, coordhttp.Options{
		Authorize: func(r *http.Request) (string, bool) {
			user, password, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(password), []byte(token)) != 1 {
				return "", false
			}
			if user == "" {
				user = "admin"
			}
			return user, true
		},
		Challenge: adminRealm,
		ReadOnly:  readOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("server: saga console: %w", err)
	}
	return console, nil
}
