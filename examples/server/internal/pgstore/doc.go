// Package pgstore holds the example server's PostgreSQL adapter: users, on
// a pgrepo repository, and the schema migrations applied at start.
package pgstore
