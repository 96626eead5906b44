-- Flow control, enforced when jobs are claimed (see overture.core.admission).

-- A job's gates (JSON: slots, buckets, breaker) as rendered when it was queued; blocked_on is
-- the slot key a refused job waits for.
ALTER TABLE jobs ADD COLUMN gates text;
ALTER TABLE jobs ADD COLUMN blocked_on text;
-- Claims take each tenant's best jobs, then interleave tenants (one backlog starves nobody).
CREATE INDEX jobs_fair ON jobs (tenant, priority, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_blocked ON jobs (tenant, blocked_on, priority, run_at, id)
    WHERE state = 'queued' AND blocked_on IS NOT NULL;

-- Who holds a concurrency slot: a running job (job_id), or a run (job_id NULL) until it ends.
CREATE TABLE flow_slots (
    tenant      text        NOT NULL,
    key         text        NOT NULL,
    holder      text        NOT NULL,
    job_id      bigint,
    run_id      text COLLATE "C" NOT NULL,
    acquired_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, key, holder)
);
CREATE INDEX flow_slots_by_job ON flow_slots (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX flow_slots_by_run ON flow_slots (run_id) WHERE job_id IS NULL;

-- Token buckets (the Wisely seed's rate_limits): tokens as of updated_at.
CREATE TABLE rate_buckets (
    tenant     text             NOT NULL,
    key        text             NOT NULL,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL,
    rate       double precision NOT NULL,
    burst      double precision NOT NULL,
    promised   double precision NOT NULL DEFAULT 0,  -- seconds: the last deferred job's time
    PRIMARY KEY (tenant, key)
);

-- Circuit breakers: failures is a JSON list of the failure times (seconds) in the window.
CREATE TABLE circuits (
    tenant     text             NOT NULL,
    key        text             NOT NULL,
    status     text             NOT NULL CHECK (status IN ('closed', 'open', 'half_open')),
    failures   text             NOT NULL,
    opened_at  timestamptz,
    open_until timestamptz,
    probe_job  bigint,
    threshold  integer          NOT NULL,
    "window"   double precision NOT NULL,
    cooldown   double precision NOT NULL,
    updated_at timestamptz      NOT NULL,
    PRIMARY KEY (tenant, key)
);

-- Wake the first job waiting for each slot key a holder let go of. Claims count holders under
-- an advisory lock per key; this does not take it (so it never waits on a claim): a wake-up
-- lost to that race costs the waiting job one re-check (admission.RECHECK), never the slot.
CREATE FUNCTION overture_wake_waiters(released_tenant text, released_key text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs SET run_at = least(run_at, now()), blocked_on = NULL
    WHERE id = (
        SELECT w.id FROM jobs w
        WHERE w.state = 'queued' AND w.tenant = released_tenant AND w.blocked_on = released_key
        ORDER BY w.priority, w.run_at, w.id LIMIT 1
        FOR UPDATE SKIP LOCKED
    );
    IF FOUND THEN
        PERFORM pg_notify('overture_jobs', '');  -- idle workers claim it at once
    END IF;
END
$$;

-- A job that stops running lets go of its slots.
CREATE FUNCTION overture_release_job_slots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    released record;
BEGIN
    FOR released IN DELETE FROM flow_slots WHERE job_id = OLD.id RETURNING tenant, key LOOP
        PERFORM overture_wake_waiters(released.tenant, released.key);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_release_slots AFTER UPDATE OF state ON jobs
FOR EACH ROW WHEN (OLD.state = 'leased' AND NEW.state <> 'leased')
EXECUTE FUNCTION overture_release_job_slots();

-- A run that ends lets go of the slots it held (a workflow's concurrency).
CREATE FUNCTION overture_release_run_slots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    released record;
BEGIN
    FOR released IN
        DELETE FROM flow_slots WHERE run_id = NEW.id AND job_id IS NULL RETURNING tenant, key
    LOOP
        PERFORM overture_wake_waiters(released.tenant, released.key);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_release_slots AFTER UPDATE OF status ON runs
FOR EACH ROW WHEN (
    NEW.status IN ('succeeded', 'failed', 'cancelled', 'compensated')
    AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated'))
EXECUTE FUNCTION overture_release_run_slots();
