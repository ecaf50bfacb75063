// Package server wires the example server together from clients the
// caller has opened: it migrates the schema, ensures indexes, builds the
// adapters, the sagas, the services and the HTTP handler, and owns the
// coordinator's recovery loop. main opens the clients and serves; the
// end-to-end tests build the same Server on the test's own databases.
package server
