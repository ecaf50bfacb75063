// Package httpapi serves the chat domain over HTTP with JSON: routing on
// net/http's patterns, strict decoding of request bodies, one mapping from
// application error codes to statuses, bearer-token authentication and
// per-user authorisation (401, 403), a per-client rate limit that fails
// open, liveness (/livez) and readiness (/readyz, /health: ok, degraded or
// unavailable) probes, a metrics endpoint, request logs and panic recovery.
package httpapi
