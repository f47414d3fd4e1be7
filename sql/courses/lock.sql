-- First statement of a PATCH that sets a capacity. FOR UPDATE conflicts with the FOR KEY
-- SHARE every enrollment write takes on the courses it adds to or removes from: it waits
-- for those in flight and keeps new ones out, so that set_capacity.sql, which follows (a
-- new snapshot), counts every enrollment of the course.
SELECT id FROM courses WHERE id = $1 FOR UPDATE;
