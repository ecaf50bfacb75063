-- List: newest first, by keyset on (created_at, id), unfiltered, by status
-- or by definition name, so that a page reads only its rows however many
-- finished sagas the table holds.
create index coord_saga_created on coord_saga (created_at, id);
create index coord_saga_status_created on coord_saga (status, created_at, id);
create index coord_saga_name_created on coord_saga (name, created_at, id);
