-- First statement of a PUT's transaction: serialise it with every other enrollment write
-- of this student, so that the replace that follows sees (and replaces) all of them.
SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE;
