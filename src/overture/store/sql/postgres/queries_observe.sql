-- name: observe_queues
-- Queued and leased attempts, by queue (their handler) and tenant: each state read through its
-- own partial index (jobs_fair, jobs_leased), so the cost follows the queue's length, not the
-- table's. A queued attempt is ready once it is due and delayed before; its wait counts from
-- due_at, which a flow control's deferral leaves alone (migration 005). A job without due_at
-- was queued by a process older than that migration: its run_at is the best known.
SELECT uses, tenant,
       count(*) FILTER (WHERE NOT leased AND due_at <= now()),
       count(*) FILTER (WHERE NOT leased AND due_at > now()),
       min(due_at) FILTER (WHERE NOT leased AND due_at <= now()),
       count(*) FILTER (WHERE leased)
FROM (
    SELECT uses, tenant, coalesce(due_at, run_at) AS due_at, false AS leased
    FROM jobs WHERE state = 'queued'
    UNION ALL
    SELECT uses, tenant, NULL, true FROM jobs WHERE state = 'leased'
) j
GROUP BY uses, tenant
ORDER BY uses, tenant;

-- name: observe_queues_of
-- observe_queues for one tenant ($1): only its part of jobs_fair is read.
SELECT uses, tenant,
       count(*) FILTER (WHERE NOT leased AND due_at <= now()),
       count(*) FILTER (WHERE NOT leased AND due_at > now()),
       min(due_at) FILTER (WHERE NOT leased AND due_at <= now()),
       count(*) FILTER (WHERE leased)
FROM (
    SELECT uses, tenant, coalesce(due_at, run_at) AS due_at, false AS leased
    FROM jobs WHERE state = 'queued' AND tenant = $1
    UNION ALL
    SELECT uses, tenant, NULL, true FROM jobs WHERE state = 'leased' AND tenant = $1
) j
GROUP BY uses, tenant
ORDER BY uses, tenant;

-- name: observe_runs
-- Unfinished runs by workflow, tenant and status. Tenants are found by skipping through
-- runs_by_tenant, then their unfinished runs through runs_by_status (tenant = ANY, status =
-- ANY): finished runs, however many, are never read. (Filtering on status alone scans every
-- run; a LATERAL per tenant is costed so high that it turns JIT on: both measured.)
WITH RECURSIVE tenants AS (
    (SELECT tenant FROM runs ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT r.tenant FROM runs r WHERE r.tenant > t.tenant ORDER BY r.tenant LIMIT 1)
    FROM tenants t WHERE t.tenant IS NOT NULL
)
SELECT workflow, tenant, status, count(*)
FROM runs
WHERE tenant = ANY(ARRAY(SELECT tenant FROM tenants WHERE tenant IS NOT NULL))
  AND status = ANY($1::text[])
GROUP BY workflow, tenant, status
ORDER BY workflow, tenant, status;

-- name: observe_runs_of
-- observe_runs for one tenant ($1), through runs_by_status.
SELECT workflow, tenant, status, count(*)
FROM runs
WHERE tenant = $1 AND status = ANY($2::text[])
GROUP BY workflow, tenant, status
ORDER BY workflow, tenant, status;

-- name: observe_dead_letters
SELECT tenant, count(*) FROM dead_letters
WHERE requeued_at IS NULL
GROUP BY tenant
ORDER BY tenant;

-- name: observe_dead_letters_of
SELECT tenant, count(*) FROM dead_letters
WHERE tenant = $1 AND requeued_at IS NULL
GROUP BY tenant;
