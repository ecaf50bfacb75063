// Package mongostore holds the example server's MongoDB adapter:
// conversations, on a docrepo repository, and the indexes they need.
package mongostore
