-- Events, webhook sources and schedules (see 003_triggers.sql).

-- name: workflow_heads
-- The latest version of each of a tenant's workflows (disabled is the same for every version).
SELECT name, max(version), disabled FROM workflows WHERE tenant = ? GROUP BY name ORDER BY name;

-- name: received_event_insert
-- Nothing when the id or the idempotency key was seen before.
INSERT INTO received_events (tenant, id, type, payload, user_id, correlation_id,
                             idempotency_key, source, meta, routes, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', ?)
ON CONFLICT DO NOTHING
RETURNING seq;

-- name: received_event_routes
UPDATE received_events SET routes = ? WHERE seq = ?;

-- name: received_event_seen
-- The event a new one repeats: the same id, or the same idempotency key.
SELECT seq, tenant, id, type, payload, user_id, correlation_id, idempotency_key, source, meta,
       routes, received_at
FROM received_events
WHERE tenant = :tenant AND (id = :id OR idempotency_key = :key)
ORDER BY seq LIMIT 1;

-- name: received_event_get
SELECT seq, tenant, id, type, payload, user_id, correlation_id, idempotency_key, source, meta,
       routes, received_at
FROM received_events WHERE tenant = ? AND id = ?;

-- name: received_event_list
-- Newest first; the cursor is the seq of the last event of the previous page.
SELECT seq, tenant, id, type, payload, user_id, correlation_id, idempotency_key, source, meta,
       routes, received_at
FROM received_events
WHERE tenant = :tenant
  AND (:type IS NULL OR type = :type)
  AND (:before IS NULL OR seq < :before)
ORDER BY seq DESC LIMIT :limit;

-- name: webhook_source_insert
INSERT INTO webhook_sources (name, tenant, scheme, secrets, options, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
RETURNING name, tenant, scheme, secrets, options, created_at, updated_at;

-- name: webhook_source_get
SELECT name, tenant, scheme, secrets, options, created_at, updated_at
FROM webhook_sources WHERE name = :name AND (:tenant IS NULL OR tenant = :tenant);

-- name: webhook_source_list
SELECT name, tenant, scheme, secrets, options, created_at, updated_at
FROM webhook_sources WHERE tenant = ? ORDER BY name;

-- name: webhook_source_secrets
UPDATE webhook_sources SET secrets = ?, updated_at = ? WHERE name = ?
RETURNING name, tenant, scheme, secrets, options, created_at, updated_at;

-- name: webhook_source_delete
DELETE FROM webhook_sources WHERE name = ? AND tenant = ?;

-- name: schedule_insert
INSERT INTO schedules (tenant, id, workflow, cron, timezone, input, catch_up, origin, paused,
                       next_fire_at, created_at, updated_at)
VALUES (:tenant, :id, :workflow, :cron, :timezone, :input, :catch_up, :origin, :paused,
        :next_fire_at, :now, :now)
ON CONFLICT DO NOTHING
RETURNING tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
          created_at, updated_at;

-- name: schedule_get
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = ? AND id = ?;

-- name: schedule_list
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = ? ORDER BY id;

-- name: schedules_of_workflow
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = ? AND workflow = ? AND origin = 'workflow';

-- name: schedule_update
-- A workflow's schedule after its workflow changed: the same tick stays due when the
-- expression and zone did not change.
UPDATE schedules
SET cron = :cron, timezone = :timezone, input = :input, catch_up = :catch_up, paused = :paused,
    next_fire_at = :next_fire_at, updated_at = :now
WHERE tenant = :tenant AND id = :id AND workflow = :workflow AND origin = :origin;

-- name: schedule_pause
UPDATE schedules SET paused = :paused, next_fire_at = :next_fire_at, updated_at = :now
WHERE tenant = :tenant AND id = :id
RETURNING tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
          created_at, updated_at;

-- name: schedule_delete
DELETE FROM schedules WHERE tenant = ? AND id = ?;

-- name: schedules_due
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE NOT paused AND next_fire_at <= ?
ORDER BY next_fire_at LIMIT ?;

-- name: schedule_advance
UPDATE schedules SET next_fire_at = ? WHERE tenant = ? AND id = ?;

-- name: schedule_next_due
SELECT min(next_fire_at) FROM schedules WHERE NOT paused;

-- name: tick_insert
-- Nothing when the tick fired already: that is what makes it fire once.
INSERT INTO schedule_ticks (tenant, schedule_id, tick, fired_at) VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING
RETURNING tick;

-- name: tick_result
UPDATE schedule_ticks SET run_id = ?, error = ?
WHERE tenant = ? AND schedule_id = ? AND tick = ?;

-- name: ticks_delete
DELETE FROM schedule_ticks WHERE tenant = ? AND schedule_id = ?;

-- name: tick_list
SELECT tenant, schedule_id, tick, fired_at, run_id, error
FROM schedule_ticks WHERE tenant = ? AND schedule_id = ?
ORDER BY tick DESC LIMIT ?;

-- name: schedules_any_due
-- Read before a write transaction is opened: most passes find nothing due.
SELECT EXISTS (SELECT 1 FROM schedules WHERE NOT paused AND next_fire_at <= ?);

-- name: schedule_get_locked
-- As schedule_get: SQLite's writer holds the whole database already.
SELECT tenant, id, workflow, cron, timezone, input, catch_up, origin, paused, next_fire_at,
       created_at, updated_at
FROM schedules WHERE tenant = ? AND id = ?;

-- name: webhook_source_get_locked
-- As webhook_source_get: SQLite's writer holds the whole database already.
SELECT name, tenant, scheme, secrets, options, created_at, updated_at
FROM webhook_sources WHERE name = :name AND (:tenant IS NULL OR tenant = :tenant);
