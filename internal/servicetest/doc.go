// Package servicetest gives integration tests real, isolated PostgreSQL,
// Redis and MongoDB-compatible servers.
//
// Each store is resolved once per test binary, in this order:
//
//  1. the URL in POSTGRES_URL, REDIS_URL, MONGODB_URL or REDIS_CLUSTER_URL
//     (`make services` prints them); a URL that does not answer fails the
//     test, naming it;
//  2. a container started with testcontainers-go, when a Docker engine answers
//     (not for Redis Cluster, which comes from `make services` only);
//  3. otherwise the test is skipped with a message that says how to get the
//     service, or fails instead when POLYSTORE_REQUIRE_SERVICES=1, as
//     `make test` and CI set it, so a run can never pass by skipping.
//
// Every call hands the test its own namespace on the shared server (a new
// PostgreSQL database, a Redis or Redis Cluster key prefix, a MongoDB
// database) and removes it when the test ends, so tests and packages run in
// parallel and leftovers on the machine do not matter.
package servicetest
