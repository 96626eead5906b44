-- The embedded store. Times are integer microseconds since the UNIX epoch, exact both ways,
-- from the host's clock, which is the database's clock here: every process using the file
-- runs on this machine. Durations (timeout) are REAL seconds.

CREATE TABLE workflows (
    tenant      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    digest      TEXT    NOT NULL,
    definition  TEXT    NOT NULL,
    created_at  INTEGER    NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE runs (
    id              TEXT    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    workflow        TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    input           TEXT,
    output          TEXT,
    error           TEXT,
    priority        INTEGER,
    correlation_id  TEXT,
    idempotency_key TEXT,
    parent_run_id   TEXT,
    created_at      INTEGER    NOT NULL,
    updated_at      INTEGER    NOT NULL,
    finished_at     INTEGER,
    last_seq        INTEGER NOT NULL
);
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_tenant ON runs (tenant, created_at, id);
CREATE INDEX runs_by_status ON runs (tenant, status, created_at, id);

CREATE TABLE events (
    run_id  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    at      INTEGER    NOT NULL,
    data    TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- One row per attempt. state: queued -> leased -> done | cancelled | expired;
-- a released job goes back to queued.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    workflow     TEXT    NOT NULL,
    step_id      TEXT    NOT NULL,
    compensation INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    uses         TEXT    NOT NULL,
    input        TEXT    NOT NULL,
    timeout      REAL,
    priority     INTEGER NOT NULL,
    run_at       INTEGER    NOT NULL,
    state        TEXT    NOT NULL,
    lease_owner  TEXT,
    lease_token  TEXT,
    lease_until  INTEGER,
    created_at   INTEGER    NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX jobs_runnable ON jobs (priority, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'leased';
CREATE INDEX jobs_active_by_step ON jobs (run_id, step_id, compensation)
    WHERE state IN ('queued', 'leased');

CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    workflow     TEXT    NOT NULL,
    step_id      TEXT    NOT NULL,
    compensation INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    error        TEXT    NOT NULL,
    created_at   INTEGER    NOT NULL,
    requeued_at  INTEGER
);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, id);

CREATE TABLE workers (
    id          TEXT    PRIMARY KEY,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    concurrency INTEGER NOT NULL,
    handlers    TEXT    NOT NULL,
    started_at  INTEGER    NOT NULL,
    last_seen   INTEGER    NOT NULL,
    stopped_at  INTEGER
);
