-- $1 name, $2 email, $3 actor (the caller's key id). A taken email raises unique_violation
-- on students_email_key, and then no event is written either.
WITH created AS (
    INSERT INTO students (name, email)
    VALUES ($1, $2)
    RETURNING id, name, email, created_at
), event AS (
    INSERT INTO events (type, actor, data)
    SELECT 'student.created', $3::bigint, student_json(id, name, email, created_at) FROM created
)
SELECT id, name, email, created_at FROM created;
