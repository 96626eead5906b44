-- API keys and the lines handlers log.

-- Bearer keys for the HTTP API. Only the SHA-256 of a key is kept (hex, of the whole plaintext
-- `ovt_<id>_<secret>`): a copy of the database gives nobody a usable key. `id` is the key's
-- public part, shown in listings and used to revoke it. scopes: a JSON array of scope names.
-- A revoked key stays, so listings can say when it was revoked.
CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL DEFAULT '',
    hash         TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- What handlers logged (ctx.log), written with their attempt's completion. `id` is the cursor a
-- reader tails a run's log with: AUTOINCREMENT, so an id is never handed out twice, even after
-- the newest lines were deleted. `at` is the worker's clock when the line was logged.
CREATE TABLE step_logs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    step_id      TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    compensation INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    level        TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    fields       TEXT    NOT NULL
);
CREATE INDEX step_logs_by_run ON step_logs (run_id, id);
