// Package coordhttp is an operator's console for coord: an http.Handler, to
// mount where the service likes (under a prefix with http.StripPrefix),
// with JSON endpoints and a small server-rendered HTML console (no
// JavaScript) to see sagas, their timelines, and retry or resolve the ones
// that need a person.
//
// It is safe to expose when the service supplies the authorisation:
// Options.Authorize is called on every request, and a request it refuses
// gets 401 and nothing else. State-changing requests are POST only and
// pass through http.CrossOriginProtection (a browser's cross-origin POST is
// refused, so a page of another site cannot use the operator's session).
// States are shown as stored, that is as coord.Options.Codec left them (a
// sealed state stays sealed). Options.ReadOnly removes every action.
//
// Endpoints (relative to where it is mounted):
//
//	GET  api/sagas                 List: ?status=failed&status=dead&name=&from=&before=&stuck=5m&limit=&after=
//	GET  api/sagas/{id}            {"saga": Info, "history": [Event], "state": stored state}
//	POST api/sagas/{id}/retry      coord.Retry; body {"why": "..."} (JSON) or form why=
//	POST api/sagas/{id}/resolve    coord.Resolve; same body
//	GET  ./                        console: counts by status, failed/dead and stuck sagas
//	GET  sagas/{id}                a saga, its state and timeline, Retry and Resolve buttons
//	POST sagas/{id}/retry|resolve  the buttons (form why=), then back to the saga
package coordhttp
