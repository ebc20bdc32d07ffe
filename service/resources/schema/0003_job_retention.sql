-- Retention: finished jobs are found by their state and age, not by a scan of the table.
CREATE INDEX jobs_finished ON jobs (state, updated_at);
