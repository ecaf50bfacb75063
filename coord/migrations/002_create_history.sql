-- The saga history: one row per event of a saga (a step started, succeeded,
-- a try failed, a compensation, a recovery, an operator's action), appended
-- by the same statement as the log write it belongs to, so it costs no round
-- trip of its own. seq orders a saga's events.
create table coord_history (
	seq       bigint      generated always as identity primary key,
	saga_id   text        not null,
	at        timestamptz not null default clock_timestamp(),
	event     text        not null,
	step      integer     not null,
	step_name text        not null default '',
	attempt   integer     not null default 0,
	error     text        not null default '',
	actor     text        not null default '',
	reason    text        not null default ''
);

-- A saga's timeline, and retention's delete by saga.
create index coord_history_saga on coord_history (saga_id, seq);
