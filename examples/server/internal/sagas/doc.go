// Package sagas runs the example server's operations that span stores as
// coord sagas: registering a user (PostgreSQL, then MongoDB, then Redis),
// updating one and deleting one (PostgreSQL, then revoking the user's
// sessions and leaving the leaderboard in Redis, then MongoDB and the
// cache). A failure before the pivot compensates
// what was done; after it, the remaining steps are retried, by the request
// and then by the coordinator's recovery loop, until they succeed.
package sagas
