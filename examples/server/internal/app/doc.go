// Package app implements the chat services on the stores: it validates
// input, hashes passwords, logs users in (a bcrypt comparison for every
// attempt, against a dummy hash for unknown accounts, behind a limit on
// failed logins), reads profiles through the cache, keeps XP on the weekly
// board, and hands the operations that span stores (registration, update,
// deletion) to the Workflows that package sagas runs on coord.
package app
