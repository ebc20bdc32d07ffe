-- The job table: one row per unit of work, from enqueue to done or dead letter.
-- Portable SQL: the same statements run on SQLite and PostgreSQL.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX jobs_pending ON jobs (state, available_at);

CREATE INDEX jobs_leased ON jobs (state, lease_expires_at);
