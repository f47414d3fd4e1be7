-- $1 id; $2 code and $3 title, each NULL to keep the current value; $4 actor. Leaves the
-- capacity as it is (a PATCH that sets one runs lock.sql, then set_capacity.sql).
-- A course.updated event only when a value really changes.
WITH before AS (
    SELECT id, code, title FROM courses WHERE id = $1 FOR NO KEY UPDATE
), updated AS (
    UPDATE courses c
       SET code  = coalesce($2, c.code),
           title = coalesce($3, c.title)
      FROM before b
     WHERE c.id = b.id
    RETURNING c.id, c.code, c.title, c.capacity,
              coalesce(c.enrolled, (SELECT count(*) FROM student_courses sc WHERE sc.course_id = c.id))
                  AS enrolled,
              c.created_at,
              (c.code, c.title) IS DISTINCT FROM (b.code, b.title) AS changed
), event AS (
    INSERT INTO events (type, actor, data)
    SELECT 'course.updated', $4::bigint, course_json(id, code, title, capacity, enrolled, created_at)
      FROM updated WHERE changed
)
SELECT id, code, title, capacity, enrolled, created_at FROM updated;
