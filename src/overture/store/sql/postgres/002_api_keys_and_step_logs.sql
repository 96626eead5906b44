-- API keys and the lines handlers log.

-- Bearer keys for the HTTP API. Only the SHA-256 of a key is kept (hex, of the whole plaintext
-- `ovt_<id>_<secret>`): a copy of the database gives nobody a usable key. `id` is the key's
-- public part, shown in listings and used to revoke it. scopes: a JSON array of scope names.
-- A revoked key stays, so listings can say when it was revoked.
CREATE TABLE api_keys (
    id           text        PRIMARY KEY,
    tenant       text        NOT NULL,
    name         text        NOT NULL DEFAULT '',
    hash         text        NOT NULL UNIQUE,
    scopes       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- What handlers logged (ctx.log), written with their attempt's completion. `id` is the cursor a
-- reader tails a run's log with: a run's lines are written while its row is locked, so within
-- a run ids grow in commit order and a reader that saw id n never misses a later line below it.
-- `at` is the worker's clock when the line was logged. fields: JSON text, as in 001.
CREATE TABLE step_logs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text COLLATE "C" NOT NULL,
    tenant       text        NOT NULL,
    step_id      text        NOT NULL,
    attempt      integer     NOT NULL,
    compensation boolean     NOT NULL,
    at           timestamptz NOT NULL,
    level        text        NOT NULL,
    message      text        NOT NULL,
    fields       text        NOT NULL
);
CREATE INDEX step_logs_by_run ON step_logs (run_id, id);
