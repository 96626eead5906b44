-- The scale-out store: the same tables as the embedded one, in PostgreSQL's types.
--
-- Times are timestamptz, always written from the database's clock (never a worker's), so leases
-- mean the same thing on every machine.
--
-- JSON payloads (inputs, outputs, errors, event data, definitions) are `text`, not `jsonb`: the
-- store writes JSON text it has just serialised and reads back whole documents it parses itself;
-- nothing queries inside them. `jsonb` would parse and re-encode every event on the hot path
-- (and render it back to text on every read) for no use.
--
-- Run ids compare in binary order (`COLLATE "C"`), as in SQLite, whatever the database's locale:
-- listings page by (created_at, id), newest first.

CREATE TABLE workflows (
    tenant      text        NOT NULL,
    name        text        NOT NULL,
    version     integer     NOT NULL,
    digest      text        NOT NULL,
    definition  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    disabled    boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE runs (
    id              text COLLATE "C" PRIMARY KEY,
    tenant          text        NOT NULL,
    workflow        text        NOT NULL,
    version         integer     NOT NULL,
    status          text        NOT NULL,
    input           text,
    output          text,
    error           text,
    priority        integer,
    correlation_id  text,
    idempotency_key text,
    parent_run_id   text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    last_seq        integer     NOT NULL
);
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_tenant ON runs (tenant, created_at, id);
CREATE INDEX runs_by_status ON runs (tenant, status, created_at, id);

-- Each run's history: seq is gapless because every append first locks the run's row.
CREATE TABLE events (
    run_id  text COLLATE "C" NOT NULL,
    seq     integer     NOT NULL,
    type    text        NOT NULL,
    at      timestamptz NOT NULL,
    data    text        NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- One row per attempt. state: queued -> leased -> done | cancelled | expired;
-- a released job goes back to queued. A queue table: rows change state often, so autovacuum
-- is asked to visit it sooner than the default 20% of dead rows.
CREATE TABLE jobs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text COLLATE "C" NOT NULL,
    tenant       text        NOT NULL,
    workflow     text        NOT NULL,
    step_id      text        NOT NULL,
    compensation boolean     NOT NULL,
    attempt      integer     NOT NULL,
    uses         text        NOT NULL,
    input        text        NOT NULL,
    timeout      double precision,
    priority     integer     NOT NULL,
    run_at       timestamptz NOT NULL,
    state        text        NOT NULL
        CHECK (state IN ('queued', 'leased', 'done', 'cancelled', 'expired')),
    lease_owner  text,
    lease_token  text,
    lease_until  timestamptz,
    created_at   timestamptz NOT NULL,
    finished_at  timestamptz
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX jobs_runnable ON jobs (priority, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'leased';
CREATE INDEX jobs_active_by_step ON jobs (run_id, step_id, compensation)
    WHERE state IN ('queued', 'leased');

CREATE TABLE dead_letters (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text        NOT NULL,
    run_id       text COLLATE "C" NOT NULL,
    workflow     text        NOT NULL,
    step_id      text        NOT NULL,
    compensation boolean     NOT NULL,
    attempts     integer     NOT NULL,
    error        text        NOT NULL,
    created_at   timestamptz NOT NULL,
    requeued_at  timestamptz
);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, id);
CREATE INDEX dead_letters_open_by_run ON dead_letters (run_id) WHERE requeued_at IS NULL;

CREATE TABLE workers (
    id          text        PRIMARY KEY,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    concurrency integer     NOT NULL,
    handlers    text        NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    stopped_at  timestamptz
);
