-- The saga log: one row per saga, rewritten as it moves from step to step.
create table coord_saga (
	id            text        primary key,
	name          text        not null,
	status        text        not null check (status in ('running', 'compensating', 'succeeded', 'compensated', 'failed')),
	step          integer     not null,
	state         jsonb       not null,
	attempts      integer     not null default 0,
	last_error    text        not null default '',
	lease_owner   text        not null default '',
	lease_expires timestamptz not null default now(),
	created_at    timestamptz not null default now(),
	updated_at    timestamptz not null default now()
);

-- Recovery looks for unfinished sagas whose lease expired.
create index coord_saga_lease on coord_saga (lease_expires) where status in ('running', 'compensating');

-- Failed lists the sagas that need a person.
create index coord_saga_failed on coord_saga (updated_at) where status = 'failed';

-- Barriers (PgBarrier): one row per step key and operation, written in the
-- transaction of the action or compensation that it guards.
create table coord_barrier (
	step_key   text        not null,
	op         text        not null check (op in ('action', 'compensate')),
	created_at timestamptz not null default now(),
	primary key (step_key, op)
);
