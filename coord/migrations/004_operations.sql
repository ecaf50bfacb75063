-- Operator actions: resolved (compensated by hand) and dead (dead-lettered
-- after too many recoveries without progress) are new statuses.
alter table coord_saga drop constraint coord_saga_status_check;
alter table coord_saga add constraint coord_saga_status_check
	check (status in ('running', 'compensating', 'succeeded', 'compensated', 'failed', 'resolved', 'dead'));

-- recoveries counts the takeovers since the saga's last log write (progress);
-- cancel_requested is Cancel's request, seen by the run at its next log
-- write; dead_status is the status a dead saga had, where Retry resumes it.
alter table coord_saga
	add column recoveries       integer not null default 0,
	add column cancel_requested boolean not null default false,
	add column dead_status      text    not null default '';

create index coord_saga_dead on coord_saga (updated_at) where status = 'dead';
