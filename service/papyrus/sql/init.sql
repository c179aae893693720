-- Papyrus schema. Canonical copy: service/sql/init.sql (papyrus/sql/init.sql must be identical).
--
-- The schema_init flow runs this file statement by statement, first inside BEGIN ... ROLLBACK
-- (dry run) and then inside BEGIN ... COMMIT. So: no BEGIN or COMMIT here, every statement
-- ends with a semicolon at the end of its line, and everything is safe to run twice.

CREATE TABLE IF NOT EXISTS skus (
    id          bigserial   PRIMARY KEY,
    sku         text        NOT NULL UNIQUE CHECK (sku <> ''),
    name        text        NOT NULL DEFAULT '',
    -- who wrote the row: the app's /dbcheck, the CLI probe (psycopg2), or seed data
    source      text        NOT NULL CHECK (source IN ('app', 'cli', 'seed')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS skus_created_at_idx ON skus (created_at);

COMMENT ON TABLE skus IS 'Papyrus SKU records (SKU-APP-* from /dbcheck, SKU-CLI-* from the CLI probe)';
