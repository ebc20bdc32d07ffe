-- Job options: a priority (higher first among the due jobs) and a dedupe key (at most one
-- pending or running job per key).
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;

CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE state IN ('pending', 'leased');

DROP INDEX jobs_pending;

CREATE INDEX jobs_due ON jobs (state, priority DESC, available_at);
