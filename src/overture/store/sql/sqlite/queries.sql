-- name: workflow_version
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = ? AND name = ? AND version = ?;

-- name: workflow_latest
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = ? AND name = ? ORDER BY version DESC LIMIT 1;

-- name: workflow_latest_head
SELECT version, disabled FROM workflows WHERE tenant = ? AND name = ?
ORDER BY version DESC LIMIT 1;

-- name: workflow_version_head
SELECT version, disabled FROM workflows WHERE tenant = ? AND name = ? AND version = ?;

-- name: workflow_list
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = ? ORDER BY name, version;

-- name: workflow_versions
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = ? AND name = ? ORDER BY version DESC;

-- name: workflow_insert
INSERT INTO workflows (tenant, name, version, digest, definition, created_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: workflow_disable
UPDATE workflows SET disabled = ? WHERE tenant = ? AND name = ?;

-- name: run_by_key
SELECT id FROM runs WHERE tenant = ? AND idempotency_key = ?;

-- name: run_exists
SELECT 1 FROM runs WHERE id = ?;

-- name: run_insert
INSERT INTO runs (id, tenant, workflow, version, status, input, priority, correlation_id,
                  idempotency_key, parent_run_id, created_at, updated_at, last_seq, not_before)
VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, 0, ?);

-- name: run_head
SELECT tenant, workflow, version, last_seq FROM runs WHERE id = ?;

-- name: run_update
UPDATE runs SET status = ?, output = ?, error = ?, updated_at = ?, finished_at = ?, last_seq = ?
WHERE id = ? AND last_seq = ?;

-- name: run_get
SELECT id, tenant, workflow, version, status, input, output, error, priority, correlation_id,
       idempotency_key, parent_run_id, created_at, updated_at, finished_at, last_seq, not_before
FROM runs WHERE id = ?;

-- name: run_list
SELECT id, tenant, workflow, version, status, input, output, error, priority, correlation_id,
       idempotency_key, parent_run_id, created_at, updated_at, finished_at, last_seq, not_before
FROM runs
WHERE (:tenant IS NULL OR tenant = :tenant)
  AND (:status IS NULL OR status = :status)
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:since IS NULL OR created_at >= :since)
  AND (:cursor_at IS NULL OR created_at < :cursor_at
       OR (created_at = :cursor_at AND id < :cursor_id))
  AND (NOT :scheduled OR (status = 'queued' AND not_before > :now))
ORDER BY created_at DESC, id DESC LIMIT :limit;

-- name: event_insert
INSERT INTO events (run_id, seq, type, at, data) VALUES (?, ?, ?, ?, ?);

-- name: events_after
SELECT seq, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?;

-- name: job_insert
-- An attempt is due at its run_at (due_at: see migration 005).
INSERT INTO jobs (run_id, tenant, workflow, step_id, compensation, attempt, uses, input, timeout,
                  priority, run_at, due_at, state, created_at, gates)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 'queued', ?12, ?13);

-- name: job_finish
UPDATE jobs SET state = 'done', finished_at = ?
WHERE id = ? AND lease_token = ? AND state = 'leased'
RETURNING run_id, step_id, attempt, compensation, tenant, gates;

-- name: job_extend
UPDATE jobs SET lease_until = ?
WHERE id = ? AND lease_token = ? AND state = 'leased' AND lease_owner = ?;

-- name: job_release
-- Given back unrun: due again from now, not from when it was first due.
UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_token = NULL, lease_until = NULL,
                run_at = ?1, due_at = ?1
WHERE id = ?2 AND lease_token = ?3 AND state = 'leased'
RETURNING run_id, step_id, attempt, compensation;

-- name: jobs_expired
SELECT id FROM jobs WHERE state = 'leased' AND lease_until < ? ORDER BY lease_until LIMIT ?;

-- name: job_expire
UPDATE jobs SET state = 'expired', finished_at = ?
WHERE id = ? AND state = 'leased' AND lease_until < ?
RETURNING run_id, step_id, attempt, compensation, lease_owner;

-- name: jobs_stop
UPDATE jobs SET state = 'cancelled', finished_at = ?
WHERE run_id = ? AND step_id = ? AND compensation = ? AND state IN ('queued', 'leased');

-- name: queue_depth
SELECT count(*) FROM jobs WHERE state = 'queued';

-- name: dead_letter_insert
INSERT INTO dead_letters (tenant, run_id, workflow, step_id, compensation, attempts, error,
                          created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: dead_letter_list
SELECT id, tenant, run_id, workflow, step_id, compensation, attempts, error, created_at,
       requeued_at
FROM dead_letters
WHERE (:tenant IS NULL OR tenant = :tenant) AND (:all OR requeued_at IS NULL)
ORDER BY id;

-- name: dead_letter_get
SELECT id, tenant, run_id, workflow, step_id, compensation, attempts, error, created_at,
       requeued_at
FROM dead_letters WHERE id = ?;

-- name: dead_letter_requeued
UPDATE dead_letters SET requeued_at = ? WHERE run_id = ? AND requeued_at IS NULL;

-- name: worker_upsert
INSERT INTO workers (id, host, pid, concurrency, handlers, started_at, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, stopped_at = NULL;

-- name: worker_stop
UPDATE workers SET stopped_at = ?, last_seen = ? WHERE id = ?;

-- name: worker_list
SELECT id, host, pid, concurrency, handlers, started_at, last_seen, stopped_at
FROM workers ORDER BY started_at DESC;

-- name: step_log_insert
INSERT INTO step_logs (run_id, tenant, step_id, attempt, compensation, at, level, message, fields)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: step_logs_after
SELECT id, run_id, step_id, attempt, compensation, at, level, message, fields
FROM step_logs WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?;

-- name: api_key_insert
-- Nothing is inserted (and nothing returned) if the id or the hash is taken.
INSERT INTO api_keys (id, tenant, name, hash, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
RETURNING id, tenant, name, scopes, created_at, last_used_at, revoked_at;

-- name: api_key_active
SELECT id, tenant, name, scopes, created_at, last_used_at, revoked_at
FROM api_keys WHERE hash = ? AND revoked_at IS NULL;

-- name: api_key_used
-- Only where the last recorded use is a while ago: processes that all saw the key used write
-- it once between them.
UPDATE api_keys SET last_used_at = :now
WHERE id = :id AND revoked_at IS NULL
  AND (last_used_at IS NULL OR last_used_at <= :now - :every)
RETURNING last_used_at;

-- name: api_key_list
SELECT id, tenant, name, scopes, created_at, last_used_at, revoked_at
FROM api_keys
WHERE (:tenant IS NULL OR tenant = :tenant) AND (:all OR revoked_at IS NULL)
ORDER BY created_at, id;

-- name: api_key_revoke
-- A key revoked already keeps the time it was revoked at.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, :now)
WHERE id = :id AND (:tenant IS NULL OR tenant = :tenant)
RETURNING id, tenant, name, scopes, created_at, last_used_at, revoked_at;

-- name: api_keys_any_active
SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL);
