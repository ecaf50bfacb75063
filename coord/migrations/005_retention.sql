-- Retention deletes finished sagas oldest first, in small batches.
create index coord_saga_finished on coord_saga (updated_at) where status in ('succeeded', 'compensated', 'resolved');
