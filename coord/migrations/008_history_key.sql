-- coord_history's primary key was its identity column alone: every event
-- of every saga went to the rightmost leaf of that index, where concurrent
-- sagas' inserts queued for one page (measured: 16 sagas in flight spent
-- a quarter of the log's PostgreSQL CPU there). The key is now the saga
-- and the sequence, the order History reads, which the old
-- coord_history_saga index held: one index instead of two, and inserts
-- spread over the sagas' pages.
create unique index coord_history_saga_seq on coord_history (saga_id, seq);
alter table coord_history
	drop constraint coord_history_pkey,
	add constraint coord_history_pkey primary key using index coord_history_saga_seq;
drop index coord_history_saga;
-- The index build blocks writes to coord_history (every saga's log writes)
-- while it runs: on a large history, deploy it at a quiet time.
