-- When an attempt became due: its run_at when it was queued (or given back by a worker). A
-- flow control that defers a job moves its run_at, never this, so the age of held work (a full
-- slot, an empty bucket, an open circuit) keeps growing in overture_queue_oldest_age_seconds.
ALTER TABLE jobs ADD COLUMN due_at timestamptz;
-- Only jobs that may still be queued are read by it: finished ones keep NULL rather than have
-- the whole history rewritten. A job deferred before this migration counts from its run_at.
UPDATE jobs SET due_at = run_at WHERE state IN ('queued', 'leased');
