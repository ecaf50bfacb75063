// Package chat is the domain of the example server, a small backend of a
// language-learning chat product: users, their sessions, their
// conversations and the messages in them, XP and the weekly leaderboard,
// the errors the service reports and the rules its input must follow.
//
// It depends on no store and no transport. The store adapters (pgstore,
// mongostore, redisstore) implement its interfaces, package app composes
// them, and package httpapi serves them; main wires the lot. This is the
// "standard package layout" of github.com/benbjohnson/wtf.
package chat
