-- First statement of a PATCH that sets a capacity, and of a conditional write (If-Match),
-- whose check and write then see the same row. FOR UPDATE conflicts with the FOR KEY
-- SHARE every enrollment write takes on the courses it adds to or removes from: it waits
-- for those in flight and keeps new ones out, so that set_capacity.sql, which follows (a
-- new snapshot), counts every enrollment of the course.
-- It also makes that change of capacity a "key" update in PostgreSQL's eyes (the row was
-- locked FOR UPDATE by the same transaction). Without it, a later FOR KEY SHARE would lock
-- the older row version its statement's snapshot shows, and an enrollment write would read
-- the capacity from before the change (tests/test_capacity.py, "binds that request").
SELECT id FROM courses WHERE id = $1 FOR UPDATE;
