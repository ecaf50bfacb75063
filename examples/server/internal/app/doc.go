// Package app implements the chat services on the stores: it validates
// input, hashes passwords, reads profiles through the cache, and hands the
// operations that span stores (registration, update, deletion) to the
// Workflows that package sagas runs on coord.
package app
