-- $1 code, $2 title, $3 actor, $4 capacity (NULL: no limit). A taken code raises
-- unique_violation on courses_code_key. A course with a capacity starts its counter at 0.
WITH created AS (
    INSERT INTO courses (code, title, capacity, enrolled)
    VALUES ($1, $2, $4::integer, CASE WHEN $4::integer IS NOT NULL THEN 0 END)
    RETURNING id, code, title, capacity, 0::bigint AS enrolled, created_at
), event AS (
    INSERT INTO events (type, actor, data)
    SELECT 'course.created', $3::bigint, course_json(id, code, title, capacity, enrolled, created_at)
      FROM created
)
SELECT id, code, title, capacity, enrolled, created_at FROM created;
