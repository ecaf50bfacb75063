-- Recovery claims the claimable sagas of one definition, oldest lease
-- first: with the name first and the lease expiry second, that is an
-- ordered index scan whatever the statistics say, stopped by the claim's
-- limit, and rows of other definitions, finished or dead are not in it.
-- (coord_saga_lease alone let the planner intersect it with the name's
-- index and sort every candidate, for each claim.)
create index coord_saga_claim on coord_saga (name, lease_expires) where status in ('running', 'compensating');
