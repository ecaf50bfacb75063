// Package coord runs operations that span PostgreSQL, Redis and MongoDB as
// sagas: ordered steps, each with a compensating action, recorded in a
// durable log in PostgreSQL so that a crash at any point ends, after
// recovery, with every step applied or every applied step compensated.
//
// It is a library inside the service, not a server beside it.
package coord
