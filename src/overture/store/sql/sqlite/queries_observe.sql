-- name: observe_queues
-- Queued and leased attempts, by queue (their handler) and tenant: each state read through its
-- own partial index (jobs_fair, jobs_leased), so the cost follows the queue's length, not the
-- table's. A queued attempt is ready once it is due and delayed before; its wait counts from
-- due_at, which a flow control's deferral leaves alone (migration 005). A job without due_at
-- was queued by a process older than that migration: its run_at is the best known.
SELECT uses, tenant,
       sum(leased = 0 AND due_at <= :now), sum(leased = 0 AND due_at > :now),
       min(CASE WHEN leased = 0 AND due_at <= :now THEN due_at END), sum(leased)
FROM (
    SELECT uses, tenant, coalesce(due_at, run_at) AS due_at, 0 AS leased
    FROM jobs WHERE state = 'queued'
    UNION ALL
    SELECT uses, tenant, NULL, 1 FROM jobs WHERE state = 'leased'
)
GROUP BY uses, tenant
ORDER BY uses, tenant;

-- name: observe_queues_of
-- observe_queues for one tenant: only its part of jobs_fair is read.
SELECT uses, tenant,
       sum(leased = 0 AND due_at <= :now), sum(leased = 0 AND due_at > :now),
       min(CASE WHEN leased = 0 AND due_at <= :now THEN due_at END), sum(leased)
FROM (
    SELECT uses, tenant, coalesce(due_at, run_at) AS due_at, 0 AS leased
    FROM jobs WHERE state = 'queued' AND tenant = :tenant
    UNION ALL
    SELECT uses, tenant, NULL, 1 FROM jobs WHERE state = 'leased' AND tenant = :tenant
)
GROUP BY uses, tenant
ORDER BY uses, tenant;

-- name: observe_runs
-- Unfinished runs by workflow, tenant and status. Tenants are found by skipping through
-- runs_by_tenant, then each tenant's unfinished runs through runs_by_status (tenant, status):
-- finished runs, however many, are never read. INDEXED BY: after ANALYZE the planner would
-- rather build a temporary index over every run (measured: 30x slower on 300k runs).
WITH RECURSIVE tenants(tenant) AS (
    SELECT min(tenant) FROM runs
    UNION ALL
    SELECT (SELECT min(r.tenant) FROM runs r WHERE r.tenant > t.tenant)
    FROM tenants t WHERE t.tenant IS NOT NULL
)
SELECT r.workflow, r.tenant, r.status, count(*)
FROM tenants t JOIN runs r INDEXED BY runs_by_status
  ON r.tenant = t.tenant AND r.status IN (SELECT value FROM json_each(:unfinished))
GROUP BY r.workflow, r.tenant, r.status
ORDER BY r.workflow, r.tenant, r.status;

-- name: observe_runs_of
-- observe_runs for one tenant, through runs_by_status.
SELECT workflow, tenant, status, count(*)
FROM runs INDEXED BY runs_by_status
WHERE tenant = :tenant AND status IN (SELECT value FROM json_each(:unfinished))
GROUP BY workflow, tenant, status
ORDER BY workflow, tenant, status;

-- name: observe_dead_letters
SELECT tenant, count(*) FROM dead_letters
WHERE requeued_at IS NULL
GROUP BY tenant
ORDER BY tenant;

-- name: observe_dead_letters_of
SELECT tenant, count(*) FROM dead_letters
WHERE tenant = :tenant AND requeued_at IS NULL
GROUP BY tenant;
