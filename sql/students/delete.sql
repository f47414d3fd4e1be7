-- $1 id, $2 actor; run after lock.sql in the same transaction. Removes the student's
-- enrollments and then the student, and records one enrollment.deleted per enrollment
-- (in rows of at most 16384 events), then student.deleted, ids in that order.
-- The courses it leaves are locked as an enrollment write locks them (after the student;
-- those this snapshot shows with a capacity FOR NO KEY UPDATE in id order, their counters
-- giving the seats back, then the others FOR KEY SHARE): see enrollments/assign.sql. When
-- one of the others has been given a capacity since the snapshot, nothing is written and
-- `stale_course_ids` names it: the caller runs the whole transaction again.
WITH taking AS (
    SELECT course_id FROM student_courses WHERE student_id = $1
), limited AS (
    SELECT id, capacity, enrolled
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c
                            WHERE c.id IN (SELECT course_id FROM taking) AND c.capacity IS NOT NULL))
     ORDER BY id
       FOR NO KEY UPDATE
), unlimited AS (
    SELECT id, capacity
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c, (SELECT count(*) FROM limited) AS after_limited
                            WHERE c.id IN (SELECT course_id FROM taking) AND c.capacity IS NULL))
     ORDER BY id
       FOR KEY SHARE
), stale AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids FROM unlimited WHERE capacity IS NOT NULL
), dropped AS (
    DELETE FROM student_courses
     WHERE student_id = $1
       AND (SELECT cardinality(course_ids) FROM stale) = 0
    RETURNING student_id, course_id
), counted AS (
    -- From the row as `limited` locked it, with its capacity: see enrollments/assign.sql.
    UPDATE courses c
       SET enrolled = l.enrolled - 1, capacity = l.capacity
      FROM limited l
     WHERE c.id = l.id
       AND l.capacity IS NOT NULL
       AND l.id IN (SELECT course_id FROM dropped)
), removed AS (
    DELETE FROM students
     WHERE id = $1
       AND (SELECT cardinality(course_ids) FROM stale) = 0
    RETURNING id
), events AS (
    INSERT INTO events (type, actor, student_ids, course_ids, data)
    SELECT type, $2::bigint, student_ids, course_ids, data
      FROM (SELECT 1 AS step, chunk, 'enrollment.deleted' AS type,
                   array_agg(student_id ORDER BY course_id) AS student_ids,
                   array_agg(course_id ORDER BY course_id) AS course_ids, NULL::json AS data
              FROM (SELECT student_id, course_id, (row_number() OVER (ORDER BY course_id) - 1) / 16384 AS chunk
                      FROM dropped) AS d
             GROUP BY chunk
             UNION ALL
            SELECT 2, 0, 'student.deleted', NULL, NULL, json_build_object('id', id) FROM removed) AS e
     ORDER BY step, chunk
)
SELECT (SELECT id FROM removed) AS id, (SELECT course_ids FROM stale) AS stale_course_ids;
