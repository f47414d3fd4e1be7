-- First statement of a conditional write (If-Match): lock the course so the answer compared
-- and the write that follows see the same row, and nobody changes it in between.
SELECT id FROM courses WHERE id = $1 FOR UPDATE;
