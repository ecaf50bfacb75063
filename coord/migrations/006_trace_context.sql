-- The trace context (W3C traceparent and tracestate, as a JSON object) of
-- the Run that started the saga, so that its recovery links to that trace.
-- Null when the Run had none. Nullable without a default: adding it
-- rewrites no row.
alter table coord_saga add column trace_context jsonb;
