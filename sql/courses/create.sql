-- $1 code, $2 title, $3 actor. A taken code raises unique_violation on courses_code_key.
WITH created AS (
    INSERT INTO courses (code, title)
    VALUES ($1, $2)
    RETURNING id, code, title, created_at
), event AS (
    INSERT INTO events (type, actor, data)
    SELECT 'course.created', $3::bigint, course_json(id, code, title, created_at) FROM created
)
SELECT id, code, title, created_at FROM created;
