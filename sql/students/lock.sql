-- First statement of a student's deletion: wait for the enrollment writes in flight and
-- keep new ones out, so that the delete which follows (a new snapshot) sees, and records,
-- every enrollment it removes.
SELECT id FROM students WHERE id = $1 FOR UPDATE;
