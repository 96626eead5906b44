-- Triggers: events applications send, webhook sources, cron schedules; delayed runs' start time.

-- A delayed run's start time (NULL: as soon as possible), so scheduled runs can be listed.
ALTER TABLE runs ADD COLUMN not_before timestamptz;
CREATE INDEX runs_not_before ON runs (tenant, not_before) WHERE not_before IS NOT NULL;
-- Runs delayed before this migration: nothing of theirs has started, and their first jobs wait
-- for a time later than the run's creation.
UPDATE runs
SET not_before = (SELECT min(j.run_at) FROM jobs j WHERE j.run_id = runs.id AND j.state = 'queued')
WHERE status = 'queued'
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = runs.id AND j.state <> 'queued')
  AND (SELECT min(j.run_at) FROM jobs j WHERE j.run_id = runs.id AND j.state = 'queued')
      > runs.created_at;

-- Events sent to POST /v1/events, or made from verified webhook deliveries. The unique index on
-- (tenant, id) is the replay cache: an event id seen again starts nothing. routes: JSON text, an
-- array of {workflow, version, run_id} or {workflow, reason}, one per workflow that listens to
-- the type, written in the transaction that stored the event and started its runs.
CREATE TABLE received_events (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text        NOT NULL,
    id              text        NOT NULL,
    type            text        NOT NULL,
    payload         text,
    user_id         text,
    correlation_id  text,
    idempotency_key text,
    source          text,
    meta            text        NOT NULL,
    routes          text        NOT NULL,
    received_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX received_events_id ON received_events (tenant, id);
CREATE UNIQUE INDEX received_events_key ON received_events (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX received_events_by_tenant ON received_events (tenant, seq);
CREATE INDEX received_events_by_type ON received_events (tenant, type, seq);

-- Where webhooks come from. The name is the URL (/v1/webhooks/{name}), so it is unique across
-- tenants. secrets: JSON text, an array of {value, added_at, expires_at}; the values must be
-- kept as they are to check signatures, so they are never returned by the API.
CREATE TABLE webhook_sources (
    name       text        PRIMARY KEY,
    tenant     text        NOT NULL,
    scheme     text        NOT NULL,
    secrets    text        NOT NULL,
    options    text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Cron schedules, made through the API (origin 'api') or from a workflow's on.cron
-- (origin 'workflow', kept in step with the latest version). next_fire_at: the first tick not
-- handled yet (NULL while paused).
CREATE TABLE schedules (
    tenant       text        NOT NULL,
    id           text        NOT NULL,
    workflow     text        NOT NULL,
    cron         text        NOT NULL,
    timezone     text        NOT NULL,
    input        text,
    catch_up     integer     NOT NULL,
    origin       text        NOT NULL,
    paused       boolean     NOT NULL DEFAULT false,
    next_fire_at timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;

-- One row per tick that fired: the primary key is what makes a tick fire once however many
-- schedulers run. run_id is NULL when the run could not start (error says why).
CREATE TABLE schedule_ticks (
    tenant      text        NOT NULL,
    schedule_id text        NOT NULL,
    tick        timestamptz NOT NULL,
    run_id      text,
    error       text,
    fired_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, schedule_id, tick)
);
