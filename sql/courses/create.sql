-- $1 code, $2 title. A taken code raises unique_violation on courses_code_key.
INSERT INTO courses (code, title)
VALUES ($1, $2)
RETURNING id, code, title, created_at;
