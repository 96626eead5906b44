-- name: jobs_candidates
-- Each tenant's best due jobs (priority, then FIFO), found by skipping through jobs_fair from
-- tenant to tenant, that no other claim holds; then those whose runs no other transaction holds
-- (SKIP LOCKED on both: a claim never waits). Returns each job's run head too: the run is
-- locked for appending StepStarted.
WITH RECURSIVE tenants AS (
    (SELECT tenant FROM jobs WHERE state = 'queued' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant FROM jobs j
            WHERE j.state = 'queued' AND j.tenant > t.tenant ORDER BY j.tenant LIMIT 1)
    FROM tenants t WHERE t.tenant IS NOT NULL
), picked AS (
    SELECT c.id, c.run_id, c.tenant, c.priority, c.run_at, c.gates
    FROM tenants t CROSS JOIN LATERAL (
        SELECT id, run_id, tenant, priority, run_at, gates FROM jobs
        WHERE state = 'queued' AND tenant = t.tenant AND run_at <= now()
          AND ($1::text[] IS NULL OR uses = ANY($1::text[]))
        ORDER BY priority, run_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE t.tenant IS NOT NULL
)
SELECT p.id, p.tenant, p.run_id, p.priority, p.run_at, p.gates,
       r.tenant, r.workflow, r.version, r.last_seq, now()
FROM picked p JOIN runs r ON r.id = p.run_id
FOR UPDATE OF r SKIP LOCKED;

-- name: jobs_lease
UPDATE jobs
SET state = 'leased', lease_owner = $1, lease_token = gen_random_uuid()::text,
    lease_until = now() + make_interval(secs => $2), blocked_on = NULL
WHERE id = ANY($3::bigint[]) AND state = 'queued'
RETURNING id, lease_token, run_id, tenant, workflow, step_id, attempt, compensation, uses, input,
          timeout, lease_until, priority, run_at;

-- name: jobs_defer
UPDATE jobs SET run_at = to_timestamp(d.run_at), blocked_on = d.blocked_on
FROM unnest($1::bigint[], $2::double precision[], $3::text[]) AS d (id, run_at, blocked_on)
WHERE jobs.id = d.id AND jobs.state = 'queued';

-- name: flow_lock
-- Serialise the claims (and completions) that read and write the same flow keys; keys come
-- sorted, so two transactions take them in one order.
SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))
FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted;

-- name: flow_slot_holders
SELECT s.tenant, s.key, s.job_id IS NULL, s.run_id
FROM flow_slots s JOIN unnest($1::text[], $2::text[]) AS w (tenant, key)
  ON s.tenant = w.tenant AND s.key = w.key;

-- name: flow_slots_insert
INSERT INTO flow_slots (tenant, key, holder, job_id, run_id, acquired_at)
SELECT tenant, key, holder, job_id, run_id, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
     AS a (tenant, key, holder, job_id, run_id)
ON CONFLICT DO NOTHING;

-- name: rate_buckets_get
SELECT b.tenant, b.key, b.tokens, extract(epoch FROM b.updated_at)::double precision, b.promised
FROM rate_buckets b JOIN unnest($1::text[], $2::text[]) AS w (tenant, key)
  ON b.tenant = w.tenant AND b.key = w.key;

-- name: rate_buckets_put
INSERT INTO rate_buckets (tenant, key, tokens, updated_at, rate, burst, promised)
SELECT tenant, key, tokens, to_timestamp(updated), rate, burst, promised
FROM unnest($1::text[], $2::text[], $3::double precision[], $4::double precision[],
            $5::double precision[], $6::double precision[], $7::double precision[])
     AS b (tenant, key, tokens, updated, rate, burst, promised)
ON CONFLICT (tenant, key) DO UPDATE
SET tokens = excluded.tokens, updated_at = excluded.updated_at, rate = excluded.rate,
    burst = excluded.burst, promised = excluded.promised;

-- name: circuits_get
SELECT c.tenant, c.key, c.status, c.failures,
       extract(epoch FROM c.opened_at)::double precision,
       extract(epoch FROM c.open_until)::double precision,
       c.probe_job,
       coalesce((SELECT j.state = 'leased' FROM jobs j WHERE j.id = c.probe_job), false)
FROM circuits c JOIN unnest($1::text[], $2::text[]) AS w (tenant, key)
  ON c.tenant = w.tenant AND c.key = w.key;

-- name: circuit_put
INSERT INTO circuits (tenant, key, status, failures, probe_job, threshold, "window", cooldown,
                      opened_at, open_until, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9), to_timestamp($10), now())
ON CONFLICT (tenant, key) DO UPDATE
SET status = excluded.status, failures = excluded.failures, probe_job = excluded.probe_job,
    threshold = excluded.threshold, "window" = excluded."window", cooldown = excluded.cooldown,
    opened_at = excluded.opened_at, open_until = excluded.open_until,
    updated_at = excluded.updated_at;

-- name: circuit_list
SELECT tenant, key, status, failures, threshold, "window", cooldown, opened_at, open_until,
       updated_at, now()
FROM circuits WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, key;

-- name: circuit_reset
UPDATE circuits
SET status = 'closed', failures = '[]', probe_job = NULL, opened_at = NULL, open_until = NULL,
    updated_at = now()
WHERE tenant = $1 AND key = $2
RETURNING tenant, key, status, failures, threshold, "window", cooldown, opened_at, open_until,
          updated_at, now();

-- name: circuit_unpark
-- After a reset, the jobs the circuit parked may start at once (and only those: a retry's
-- backoff or a delayed run keeps its time).
WITH unparked AS (
    UPDATE jobs SET run_at = now(), blocked_on = NULL
    WHERE state = 'queued' AND tenant = $1 AND blocked_on = $2
    RETURNING 1
)
SELECT pg_notify($3, '') FROM (SELECT count(*) FROM unparked) AS n;
