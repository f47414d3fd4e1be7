-- First statement of a conditional write (If-Match): lock the course so the answer compared
-- and the write that follows see the same row, and no other write changes it in between.
-- Not FOR UPDATE: enrollments (FOR KEY SHARE) may go on meanwhile.
SELECT id FROM courses WHERE id = $1 FOR NO KEY UPDATE;
