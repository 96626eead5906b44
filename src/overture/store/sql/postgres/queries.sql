-- Named statements of the PostgreSQL store (asyncpg: $n parameters).
--
-- Times: `now()` is the transaction's start on the database's clock; a transaction reads it
-- once (returned by its first statement) and uses that value for everything it writes.
-- Bulk writes pass one array per column and `unnest` them: one round trip for any number of
-- rows. Columns are selected in the same order as the SQLite queries (store/rows.py reads both).

-- name: migrations_lock
-- Serialises migrations across processes; released at the end of the transaction.
SELECT pg_advisory_xact_lock(8031718527716389477);

-- name: migrations_table
CREATE TABLE IF NOT EXISTS overture_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL
);

-- name: migrations_table_exists
SELECT to_regclass('overture_migrations') IS NOT NULL;

-- name: migrations_applied
SELECT version FROM overture_migrations ORDER BY version;

-- name: migration_record
INSERT INTO overture_migrations (version, name, applied_at) VALUES ($1, $2, now());

-- name: now
SELECT now();

-- name: ping
SELECT 1;

-- name: notify
SELECT pg_notify($1, '');

-- name: workflow_version
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = $1 AND name = $2 AND version = $3;

-- name: workflow_latest
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = $1 AND name = $2 ORDER BY version DESC LIMIT 1;

-- name: workflow_head_for_start
-- The version a new run starts with ($3; NULL: the latest), whether it is disabled, and the
-- transaction's time.
SELECT version, disabled, now()
FROM workflows
WHERE tenant = $1 AND name = $2 AND ($3::integer IS NULL OR version = $3)
ORDER BY version DESC LIMIT 1;

-- name: workflow_lock
-- Serialises registrations of one workflow (the version a registration gets depends on the
-- versions already there). Two int4 keys: a key space apart from the migrations' lock.
SELECT pg_advisory_xact_lock(1870033780, hashtext($1 || '/' || $2));

-- name: workflow_list
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = $1 ORDER BY name, version;

-- name: workflow_versions
SELECT tenant, name, version, digest, definition, created_at, disabled
FROM workflows WHERE tenant = $1 AND name = $2 ORDER BY version DESC;

-- name: workflow_insert
INSERT INTO workflows (tenant, name, version, digest, definition, created_at)
VALUES ($1, $2, $3, $4, $5, now())
RETURNING tenant, name, version, digest, definition, created_at, disabled;

-- name: workflow_disable
UPDATE workflows SET disabled = $1 WHERE tenant = $2 AND name = $3;

-- name: run_by_key
SELECT id, tenant, workflow, version, status, input, output, error, priority, correlation_id,
       idempotency_key, parent_run_id, created_at, updated_at, finished_at, last_seq, not_before
FROM runs WHERE tenant = $1 AND idempotency_key = $2;

-- name: run_exists
SELECT 1 FROM runs WHERE id = $1;

-- name: run_insert
-- The run as its first transition leaves it. A concurrent start with the same idempotency key
-- inserts nothing (it waits for the other transaction, then finds its row): no error.
INSERT INTO runs (id, tenant, workflow, version, status, input, output, error, priority,
                  correlation_id, idempotency_key, parent_run_id, created_at, updated_at,
                  finished_at, last_seq, not_before)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15, $16)
ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, tenant, workflow, version, status, input, output, error, priority,
          correlation_id, idempotency_key, parent_run_id, created_at, updated_at, finished_at,
          last_seq, not_before;

-- name: run_get
SELECT id, tenant, workflow, version, status, input, output, error, priority, correlation_id,
       idempotency_key, parent_run_id, created_at, updated_at, finished_at, last_seq, not_before
FROM runs WHERE id = $1;

-- name: run_get_locked
-- The run, locked for appending to its history, and the transaction's time.
SELECT id, tenant, workflow, version, status, input, output, error, priority, correlation_id,
       idempotency_key, parent_run_id, created_at, updated_at, finished_at, last_seq, not_before, now()
FROM runs WHERE id = $1
FOR UPDATE;

-- name: runs_lock
-- Every transaction appending to runs locks them first, always in id order (no deadlocks
-- between two such transactions); seq stays gapless.
SELECT id, tenant, workflow, version, last_seq
FROM runs WHERE id = ANY($1::text[])
ORDER BY id
FOR UPDATE;

-- name: runs_lock_for_jobs
-- The runs of these jobs, locked in id order before any of the jobs is touched.
SELECT j.id, r.id, r.tenant, r.workflow, r.version, r.last_seq
FROM jobs j JOIN runs r ON r.id = j.run_id
WHERE j.id = ANY($1::bigint[])
ORDER BY r.id
FOR UPDATE OF r;

-- name: runs_update
UPDATE runs
SET status = u.status, output = u.output, error = u.error, updated_at = now(),
    finished_at = u.finished_at, last_seq = u.last_seq
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::integer[])
     AS u (id, status, output, error, finished_at, last_seq)
WHERE runs.id = u.id;

-- name: runs_update_get
UPDATE runs
SET status = u.status, output = u.output, error = u.error, updated_at = now(),
    finished_at = u.finished_at, last_seq = u.last_seq
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::integer[])
     AS u (id, status, output, error, finished_at, last_seq)
WHERE runs.id = u.id
RETURNING runs.id, runs.tenant, runs.workflow, runs.version, runs.status, runs.input,
          runs.output, runs.error, runs.priority, runs.correlation_id, runs.idempotency_key,
          runs.parent_run_id, runs.created_at, runs.updated_at, runs.finished_at,
          runs.last_seq, runs.not_before;

-- name: run_list
-- Newest first; the cursor is the (created_at, id) of the last run of the previous page.
SELECT id, tenant, workflow, version, status, input, output, error, priority, correlation_id,
       idempotency_key, parent_run_id, created_at, updated_at, finished_at, last_seq, not_before
FROM runs
WHERE ($1::text IS NULL OR tenant = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR workflow = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5 OR (created_at = $5 AND id < $6::text))
  AND (NOT $8::boolean OR (status = 'queued' AND not_before > now()))
ORDER BY created_at DESC, id DESC LIMIT $7;

-- name: events_insert
INSERT INTO events (run_id, seq, type, at, data)
SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::timestamptz[], $5::text[]);

-- name: events_after
SELECT seq, data FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3;

-- name: events_after_each
-- The events of several runs, each after its own seq: one ordered primary-key range per run
-- (a LATERAL subquery with its own ORDER BY is never flattened into a join that sorts).
SELECT m.run_id, e.seq, e.data
FROM unnest($1::text[], $2::integer[]) AS m (run_id, after)
CROSS JOIN LATERAL (
    SELECT seq, data FROM events WHERE run_id = m.run_id AND seq > m.after ORDER BY seq
) AS e;

-- name: jobs_insert
-- New attempts, and a wake-up for listening workers (delivered when the transaction commits).
-- An attempt is due at its run_at (due_at: see migration 005).
WITH inserted AS (
    INSERT INTO jobs (run_id, tenant, workflow, step_id, compensation, attempt, uses, input,
                      timeout, priority, run_at, due_at, state, created_at, gates)
    SELECT run_id, tenant, workflow, step_id, compensation, attempt, uses, input, timeout,
           priority, run_at, run_at, 'queued', now(), gates
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::integer[],
                $7::text[], $8::text[], $9::double precision[], $10::integer[],
                $11::timestamptz[], $12::text[])
         AS j (run_id, tenant, workflow, step_id, compensation, attempt, uses, input, timeout,
               priority, run_at, gates)
    RETURNING 1
)
SELECT pg_notify($13, '');

-- name: claim_plan
-- For the claim's transaction only: walk jobs_runnable in order and stop at the limit, never
-- collect every due job and sort it. Statistics lag a burst of new jobs (a table that held a
-- few queued jobs at the last ANALYZE and now holds a million), and with them the planner would
-- sort the whole backlog on every claim. (The claim's other statements need no sort.)
SET LOCAL enable_sort = off;

-- name: claim_plan_done
-- Sorting is on again for the rest of the claim: with it off, a statement that must sort is
-- costed so high that it is JIT-compiled, which takes far longer than running it.
SET LOCAL enable_sort = on;

-- name: jobs_held_back
-- After a claim that took fewer than it asked for: is a due job left that no other claim holds?
-- (Its run was busy, or it was queued meanwhile.) Then claiming again shortly is worth it.
SELECT id FROM jobs
WHERE state = 'queued' AND run_at <= now()
  AND ($1::text[] IS NULL OR uses = ANY($1::text[]))
  AND EXISTS (SELECT FROM runs WHERE runs.id = jobs.run_id)
ORDER BY priority, run_at, id
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: jobs_finish
-- Fenced: only where the lease is still the caller's.
UPDATE jobs SET state = 'done', finished_at = now()
FROM unnest($1::bigint[], $2::text[]) AS c (id, token)
WHERE jobs.id = c.id AND jobs.lease_token = c.token AND jobs.state = 'leased'
RETURNING jobs.id, jobs.run_id, jobs.step_id, jobs.attempt, jobs.compensation, now(),
          jobs.tenant, jobs.gates;

-- name: jobs_extend
-- Rows are locked in id order (as jobs_stop does), so two such statements cannot deadlock.
WITH held AS (
    SELECT j.id
    FROM jobs j JOIN unnest($2::bigint[], $3::text[]) AS h (id, token) ON j.id = h.id
    WHERE j.lease_token = h.token AND j.state = 'leased' AND j.lease_owner = $4
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE jobs SET lease_until = now() + make_interval(secs => $1)
FROM held
WHERE jobs.id = held.id
RETURNING jobs.id;

-- name: jobs_release
-- Given back unrun: due again from now, not from when it was first due.
UPDATE jobs
SET state = 'queued', lease_owner = NULL, lease_token = NULL, lease_until = NULL,
    run_at = now(), due_at = now()
FROM unnest($1::bigint[], $2::text[]) AS l (id, token)
WHERE jobs.id = l.id AND jobs.lease_token = l.token AND jobs.state = 'leased'
RETURNING jobs.id, jobs.run_id, jobs.step_id, jobs.attempt, jobs.compensation, now();

-- name: jobs_expired
-- Leases past their time whose job and run nobody else holds: concurrent reapers (and a
-- worker completing its job late) never wait for each other; a skipped one is reaped next time.
WITH picked AS (
    SELECT id, run_id, lease_until FROM jobs
    WHERE state = 'leased' AND lease_until < now()
    ORDER BY lease_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
SELECT p.id, now()
FROM picked p JOIN runs r ON r.id = p.run_id
ORDER BY p.lease_until, p.id
FOR UPDATE OF r SKIP LOCKED;

-- name: job_expire
UPDATE jobs SET state = 'expired', finished_at = now()
WHERE id = $1 AND state = 'leased' AND lease_until < now()
RETURNING run_id, step_id, attempt, compensation, lease_owner;

-- name: jobs_stop
-- The queued or running attempts of these steps end; rows are locked in id order.
WITH stopping AS (
    SELECT j.id
    FROM jobs j
    JOIN unnest($1::text[], $2::text[], $3::boolean[]) AS s (run_id, step_id, compensation)
      ON j.run_id = s.run_id AND j.step_id = s.step_id AND j.compensation = s.compensation
    WHERE j.state IN ('queued', 'leased')
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE jobs SET state = 'cancelled', finished_at = now()
FROM stopping
WHERE jobs.id = stopping.id AND jobs.state IN ('queued', 'leased');

-- name: queue_depth
SELECT count(*) FROM jobs WHERE state = 'queued';

-- name: dead_letters_insert
INSERT INTO dead_letters (tenant, run_id, workflow, step_id, compensation, attempts, error,
                          created_at)
SELECT tenant, run_id, workflow, step_id, compensation, attempts, error, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::integer[],
            $7::text[])
     AS d (tenant, run_id, workflow, step_id, compensation, attempts, error);

-- name: dead_letter_list
SELECT id, tenant, run_id, workflow, step_id, compensation, attempts, error, created_at,
       requeued_at
FROM dead_letters
WHERE ($1::text IS NULL OR tenant = $1) AND ($2::boolean OR requeued_at IS NULL)
ORDER BY id;

-- name: dead_letters_get
SELECT id, tenant, run_id, workflow, step_id, compensation, attempts, error, created_at,
       requeued_at
FROM dead_letters WHERE id = ANY($1::bigint[]);

-- name: dead_letter_requeued
UPDATE dead_letters SET requeued_at = now() WHERE run_id = $1 AND requeued_at IS NULL;

-- name: worker_upsert
INSERT INTO workers (id, host, pid, concurrency, handlers, started_at, last_seen)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, stopped_at = NULL;

-- name: worker_stop
UPDATE workers SET stopped_at = now(), last_seen = now() WHERE id = $1;

-- name: worker_list
SELECT id, host, pid, concurrency, handlers, started_at, last_seen, stopped_at
FROM workers ORDER BY started_at DESC;

-- name: step_logs_insert
-- The log lines of completions just recorded (their runs are locked: ids follow commit order).
INSERT INTO step_logs (run_id, tenant, step_id, attempt, compensation, at, level, message, fields)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::boolean[],
                     $6::timestamptz[], $7::text[], $8::text[], $9::text[]);

-- name: step_logs_after
SELECT id, run_id, step_id, attempt, compensation, at, level, message, fields
FROM step_logs WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3;

-- name: api_key_insert
-- Nothing is inserted (and nothing returned) if the id or the hash is taken.
INSERT INTO api_keys (id, tenant, name, hash, scopes, created_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT DO NOTHING
RETURNING id, tenant, name, scopes, created_at, last_used_at, revoked_at;

-- name: api_key_active
SELECT id, tenant, name, scopes, created_at, last_used_at, revoked_at
FROM api_keys WHERE hash = $1 AND revoked_at IS NULL;

-- name: api_key_used
-- Only where the last recorded use is a while ago: processes that all saw the key used write
-- it once between them.
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND revoked_at IS NULL
  AND (last_used_at IS NULL OR last_used_at <= now() - make_interval(secs => $2))
RETURNING last_used_at;

-- name: api_key_list
SELECT id, tenant, name, scopes, created_at, last_used_at, revoked_at
FROM api_keys
WHERE ($1::text IS NULL OR tenant = $1) AND ($2::boolean OR revoked_at IS NULL)
ORDER BY created_at, id;

-- name: api_key_revoke
-- A key revoked already keeps the time it was revoked at.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)
RETURNING id, tenant, name, scopes, created_at, last_used_at, revoked_at;

-- name: api_keys_any_active
SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL);
