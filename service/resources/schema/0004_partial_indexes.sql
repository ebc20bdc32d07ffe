-- Partial indexes: each holds only the rows in the state its queries look for, so a job
-- enqueued, claimed or finished writes to fewer of them, and the ones the poller reads
-- (due, leased) stay the size of the backlog however many finished jobs are kept.
DROP INDEX jobs_due;

CREATE INDEX jobs_due ON jobs (queue, priority DESC, available_at) WHERE state = 'pending';

DROP INDEX jobs_leased;

CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'leased';

DROP INDEX jobs_finished;

CREATE INDEX jobs_done ON jobs (updated_at) WHERE state = 'done';

CREATE INDEX jobs_failed ON jobs (updated_at) WHERE state = 'failed';

-- Only the jobs that have a key: the others never conflict.
DROP INDEX jobs_dedupe;

CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('pending', 'leased');

-- Type first: led by the state, the planner took it for the poller's queries by state.
DROP INDEX jobs_by_type;

CREATE INDEX jobs_by_type ON jobs (job_type, state);
