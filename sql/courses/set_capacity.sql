-- PATCH with a capacity, after lock.sql in the same transaction. $1 id; $2 code and $3 title,
-- each NULL to keep the current value; $4 actor; $5 the new capacity, NULL to lift the limit.
-- Changes nothing when the course has more students than $5 (then `id` is NULL); else sets
-- the capacity and the counter (counted now when the course had no capacity, NULL when it
-- has none any more). A course.updated event only when a value really changes.
WITH current AS (
    SELECT id, code, title, capacity,
           coalesce(enrolled, (SELECT count(*) FROM student_courses sc WHERE sc.course_id = c.id))::integer
               AS enrolled
      FROM courses c
     WHERE id = $1
), updated AS (
    UPDATE courses c
       SET code     = coalesce($2, c.code),
           title    = coalesce($3, c.title),
           capacity = $5::integer,
           enrolled = CASE WHEN $5::integer IS NOT NULL THEN cur.enrolled END
      FROM current cur
     WHERE c.id = cur.id
       AND ($5::integer IS NULL OR cur.enrolled <= $5::integer)
    RETURNING c.id, c.code, c.title, c.capacity, cur.enrolled, c.created_at,
              (c.code, c.title, c.capacity) IS DISTINCT FROM (cur.code, cur.title, cur.capacity) AS changed
), event AS (
    INSERT INTO events (type, actor, data)
    SELECT 'course.updated', $4::bigint, course_json(id, code, title, capacity, enrolled, created_at)
      FROM updated WHERE changed
)
SELECT cur.enrolled AS enrolled_now, u.id, u.code, u.title, u.capacity, u.enrolled, u.created_at
  FROM current cur
  LEFT JOIN updated u ON true;
