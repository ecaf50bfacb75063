// Package app implements the chat services on the stores: it validates
// input, hashes passwords, reads profiles through the cache, and runs the
// operations that span stores (registration, deletion) as coord sagas.
package app
