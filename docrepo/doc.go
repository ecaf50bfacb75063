// Package docrepo provides typed MongoDB repositories on
// go.mongodb.org/mongo-driver/v2: one generic repository per collection, with
// optimistic locking, a typed update builder, keyset pagination, idempotent
// index creation and filters that client input cannot turn into operators.
package docrepo
