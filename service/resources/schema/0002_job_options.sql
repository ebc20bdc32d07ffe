-- Job options: a priority (higher first among the due jobs), a dedupe key (at most one
-- pending or running job per key), the job's type (for operators: listing and counting by
-- type) and its queue (each queue has a poller of its own).
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;

ALTER TABLE jobs ADD COLUMN job_type TEXT;

ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';

CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE state IN ('pending', 'leased');

DROP INDEX jobs_pending;

CREATE INDEX jobs_due ON jobs (queue, state, priority DESC, available_at);

CREATE INDEX jobs_by_type ON jobs (state, job_type);
