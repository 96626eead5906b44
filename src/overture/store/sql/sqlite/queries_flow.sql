-- name: jobs_candidates
-- Each tenant's best due jobs (priority, then FIFO): tenants found by skipping through the
-- jobs_fair index, so a claim costs per tenant with work, not per queued job.
WITH RECURSIVE tenants(tenant) AS (
    SELECT min(tenant) FROM jobs WHERE state = 'queued'
    UNION ALL
    SELECT (SELECT min(j.tenant) FROM jobs j WHERE j.state = 'queued' AND j.tenant > t.tenant)
    FROM tenants t WHERE t.tenant IS NOT NULL
)
SELECT j.id, j.tenant, j.run_id, j.priority, j.run_at, j.gates
FROM tenants t JOIN jobs j ON j.id IN (
    SELECT id FROM jobs
    WHERE state = 'queued' AND tenant = t.tenant AND run_at <= :now
      AND (:handlers IS NULL OR uses IN (SELECT value FROM json_each(:handlers)))
    ORDER BY priority, run_at, id
    LIMIT :per_tenant
);

-- name: jobs_lease
UPDATE jobs
SET state = 'leased', lease_owner = :worker, lease_token = lower(hex(randomblob(12))),
    lease_until = :now + :lease, blocked_on = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'queued'
RETURNING id, lease_token, run_id, tenant, workflow, step_id, attempt, compensation, uses, input,
          timeout, lease_until, priority, run_at;

-- name: job_defer
UPDATE jobs SET run_at = ?, blocked_on = ? WHERE id = ? AND state = 'queued';

-- name: flow_slot_holders
SELECT job_id IS NULL, run_id FROM flow_slots WHERE tenant = ? AND key = ?;

-- name: flow_slot_insert
INSERT OR IGNORE INTO flow_slots (tenant, key, holder, job_id, run_id, acquired_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: rate_bucket_get
SELECT tokens, updated_at, promised FROM rate_buckets WHERE tenant = ? AND key = ?;

-- name: rate_bucket_put
INSERT INTO rate_buckets (tenant, key, tokens, updated_at, rate, burst, promised)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, key) DO UPDATE
SET tokens = excluded.tokens, updated_at = excluded.updated_at, rate = excluded.rate,
    burst = excluded.burst, promised = excluded.promised;

-- name: circuit_get
SELECT c.status, c.failures, c.opened_at, c.open_until, c.probe_job,
       coalesce((SELECT state = 'leased' FROM jobs WHERE id = c.probe_job), 0)
FROM circuits c WHERE c.tenant = ? AND c.key = ?;

-- name: circuit_put
INSERT INTO circuits (tenant, key, status, failures, probe_job, threshold, window, cooldown,
                      opened_at, open_until, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, key) DO UPDATE
SET status = excluded.status, failures = excluded.failures, probe_job = excluded.probe_job,
    threshold = excluded.threshold, window = excluded.window, cooldown = excluded.cooldown,
    opened_at = excluded.opened_at, open_until = excluded.open_until,
    updated_at = excluded.updated_at;

-- name: circuit_list
SELECT tenant, key, status, failures, threshold, window, cooldown, opened_at, open_until,
       updated_at
FROM circuits WHERE (:tenant IS NULL OR tenant = :tenant) ORDER BY tenant, key;

-- name: circuit_reset
UPDATE circuits
SET status = 'closed', failures = '[]', probe_job = NULL, opened_at = NULL, open_until = NULL,
    updated_at = :now
WHERE tenant = :tenant AND key = :key
RETURNING tenant, key, status, failures, threshold, window, cooldown, opened_at, open_until,
          updated_at;

-- name: circuit_unpark
-- After a reset, the jobs the circuit parked may start at once (and only those: a retry's
-- backoff or a delayed run keeps its time).
UPDATE jobs SET run_at = :now, blocked_on = NULL
WHERE state = 'queued' AND tenant = :tenant AND blocked_on = :parked;
