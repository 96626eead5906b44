-- Events, webhook sources and schedules (see 003_triggers.sql).

-- name: workflow_heads
-- The latest version of each of a tenant's workflows (disabled is the same for every version).
SELECT DISTINCT ON (name) name, version, disabled
FROM workflows WHERE tenant = $1 ORDER BY name, version DESC;

-- name: received_event_insert
-- Nothing when the id or the idempotency key was seen before (a concurrent insert of either
-- waits for the other transaction, then inserts nothing).
INSERT INTO received_events (tenant, id, type, payload, user_id, correlation_id,
                             idempotency_key, source, meta, routes, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '[]', now())
ON CONFLICT DO NOTHING
RETURNING seq;

-- name: received_event_routes
UPDATE received_events SET routes = $1 WHERE seq = $2;

-- name: received_event_seen
-- The event a new one repeats: the same id, or the same idempotency key.
SELECT seq, tenant, id, type, payload, user_id, correlation_id, idempotency_key, source, meta,
       routes, received_at
FROM received_events
WHERE tenant = $1 AND (id = $2 OR idempotency_key = $3)
ORDER BY seq LIMIT 1;

-- name: received_event_get
SELECT seq, tenant, id, type, payload, user_id, correlation_id, idempotency_key, source, meta,
       routes, received_at
FROM received_events WHERE tenant = $1 AND id = $2;

-- name: received_event_list
-- Newest first; the cursor is the seq of the last event of the previous page.
SELECT seq, tenant, id, type, payload, user_id, correlation_id, idempotency_key, source, meta,
       routes, received_at
FROM received_events
WHERE tenant = $1
  AND ($2::text IS NULL OR type = $2)
  AND ($3::bigint IS NULL OR seq < $3)
ORDER BY seq DESC LIMIT $4;

-- name: webhook_source_insert
INSERT INTO webhook_sources (name, tenant, scheme, secrets, options, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, now(), now())
ON CONFLICT DO NOTHING
RETURNING name, tenant, scheme, secrets, options, created_at, updated_at;

-- name: webhook_source_get
SELECT name, tenant, scheme, secrets, options, created_at, updated_at
FROM webhook_sources WHERE name = $1 AND ($2::text IS NULL OR tenant = $2);

-- name: webhook_source_list
SELECT name, tenant, scheme, secrets, options, created_at, updated_at
FROM webhook_sources WHERE tenant = $1 ORDER BY name;

-- name: webhook_source_secrets
UPDATE webhook_sources SET secrets = $1, updated_at = now() WHERE name = $2
RETURNING name, tenant, scheme, secrets, options, created_at, updated_at;

-- name: webhook_source_delete
DELETE FROM webhook_sources WHERE name = $1 AND tenant = $2;

-- name: schedule_insert
INSERT INTO schedules (tenant, id, workflow, cron, timezone, input, catch_up, origin, paused,
                       next_fire_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(), now())
ON CONFLICT DO NOTHING
RETURNING tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
          created_at, updated_at;

-- name: schedule_get
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = $1 AND id = $2;

-- name: schedule_list
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = $1 ORDER BY id;

-- name: schedules_of_workflow
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = $1 AND workflow = $2 AND origin = 'workflow'
FOR UPDATE;

-- name: schedule_update
-- A workflow's schedule after its workflow changed: the same tick stays due when the
-- expression and zone did not change.
UPDATE schedules
SET cron = $4, timezone = $5, input = $6, catch_up = $7, paused = $9, next_fire_at = $10,
    updated_at = now()
WHERE tenant = $1 AND id = $2 AND workflow = $3 AND origin = $8;

-- name: schedule_pause
UPDATE schedules SET paused = $3, next_fire_at = $4, updated_at = now()
WHERE tenant = $1 AND id = $2
RETURNING tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
          created_at, updated_at;

-- name: schedule_delete
DELETE FROM schedules WHERE tenant = $1 AND id = $2;

-- name: schedules_due
-- Locked, skipping those another scheduler holds: it fires them, and when it commits their
-- next_fire_at has moved on, so no two schedulers fire one tick.
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE NOT paused AND next_fire_at <= $1
ORDER BY next_fire_at LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: schedule_advance
UPDATE schedules SET next_fire_at = $1 WHERE tenant = $2 AND id = $3;

-- name: schedule_next_due
SELECT min(next_fire_at) FROM schedules WHERE NOT paused;

-- name: tick_insert
-- Nothing when the tick fired already: that is what makes it fire once.
INSERT INTO schedule_ticks (tenant, schedule_id, tick, fired_at) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING tick;

-- name: tick_result
UPDATE schedule_ticks SET run_id = $1, error = $2
WHERE tenant = $3 AND schedule_id = $4 AND tick = $5;

-- name: ticks_delete
DELETE FROM schedule_ticks WHERE tenant = $1 AND schedule_id = $2;

-- name: tick_list
SELECT tenant, schedule_id, tick, fired_at, run_id, error
FROM schedule_ticks WHERE tenant = $1 AND schedule_id = $2
ORDER BY tick DESC LIMIT $3;

-- name: schedules_any_due
-- Read before a write transaction is opened: most passes find nothing due.
SELECT EXISTS (
    SELECT 1 FROM schedules WHERE NOT paused AND next_fire_at <= coalesce($1, now())
);

-- name: schedule_get_locked
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = $1 AND id = $2
FOR UPDATE;

-- name: webhook_source_get_locked
SELECT name, tenant, scheme, secrets, options, created_at, updated_at
FROM webhook_sources WHERE name = $1 AND ($2::text IS NULL OR tenant = $2)
FOR UPDATE;
