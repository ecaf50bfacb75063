// Package pgrepo provides typed PostgreSQL repositories on pgx/v5: one
// generic repository per table, described once from struct tags, with
// optimistic locking, soft deletes, typed query predicates, keyset
// pagination, retried transactions and errors that callers match with
// errors.Is instead of SQLSTATE strings.
package pgrepo
