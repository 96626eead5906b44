-- Flow control, enforced when jobs are claimed (see overture.core.admission).

-- A job's gates (JSON: slots, buckets, breaker) as rendered when it was queued; blocked_on is
-- the slot key a refused job waits for.
ALTER TABLE jobs ADD COLUMN gates TEXT;
ALTER TABLE jobs ADD COLUMN blocked_on TEXT;
-- Claims take each tenant's best jobs, then interleave tenants (one backlog starves nobody).
CREATE INDEX jobs_fair ON jobs (tenant, priority, run_at, id) WHERE state = 'queued';
-- It replaces the claim's old index: one less index to keep up on every insert and claim.
DROP INDEX jobs_runnable;
CREATE INDEX jobs_blocked ON jobs (tenant, blocked_on, priority, run_at, id)
    WHERE state = 'queued' AND blocked_on IS NOT NULL;

-- Who holds a concurrency slot: a running job (job_id), or a run (job_id NULL) until it ends.
CREATE TABLE flow_slots (
    tenant      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    job_id      INTEGER,
    run_id      TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key, holder)
) WITHOUT ROWID;
CREATE INDEX flow_slots_by_job ON flow_slots (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX flow_slots_by_run ON flow_slots (run_id) WHERE job_id IS NULL;

-- Token buckets (the Wisely seed's rate_limits): tokens as of updated_at.
CREATE TABLE rate_buckets (
    tenant     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    tokens     REAL    NOT NULL,
    updated_at INTEGER NOT NULL,
    rate       REAL    NOT NULL,
    burst      REAL    NOT NULL,
    promised   REAL    NOT NULL DEFAULT 0,  -- seconds: the last deferred job's time
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;

-- Circuit breakers: failures is a JSON list of the failure times (seconds) in the window.
CREATE TABLE circuits (
    tenant     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    failures   TEXT    NOT NULL,
    opened_at  INTEGER,
    open_until INTEGER,
    probe_job  INTEGER,
    threshold  INTEGER NOT NULL,
    window     REAL    NOT NULL,
    cooldown   REAL    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;

-- A job that stops running lets go of its slots and wakes the first job waiting for each.
-- (finished_at is the transition's time; a released job has none but its new run_at.)
CREATE TRIGGER jobs_release_slots AFTER UPDATE OF state ON jobs
WHEN old.state = 'leased' AND new.state <> 'leased'
BEGIN
    UPDATE jobs SET run_at = min(run_at, coalesce(new.finished_at, new.run_at)), blocked_on = NULL
    WHERE id IN (
        SELECT (SELECT w.id FROM jobs w
                WHERE w.state = 'queued' AND w.tenant = s.tenant AND w.blocked_on = s.key
                ORDER BY w.priority, w.run_at, w.id LIMIT 1)
        FROM flow_slots s WHERE s.job_id = old.id
    );
    DELETE FROM flow_slots WHERE job_id = old.id;
END;

-- A run that ends lets go of the slots it held (a workflow's concurrency).
CREATE TRIGGER runs_release_slots AFTER UPDATE OF status ON runs
WHEN new.status IN ('succeeded', 'failed', 'cancelled', 'compensated')
 AND old.status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated')
BEGIN
    UPDATE jobs SET run_at = min(run_at, new.updated_at), blocked_on = NULL
    WHERE id IN (
        SELECT (SELECT w.id FROM jobs w
                WHERE w.state = 'queued' AND w.tenant = s.tenant AND w.blocked_on = s.key
                ORDER BY w.priority, w.run_at, w.id LIMIT 1)
        FROM flow_slots s WHERE s.run_id = new.id AND s.job_id IS NULL
    );
    DELETE FROM flow_slots WHERE run_id = new.id AND job_id IS NULL;
END;
