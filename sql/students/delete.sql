-- $1 id, $2 actor. Removes the student's enrollments and then the student, and records
-- one enrollment.deleted per enrollment, then student.deleted (ids in that order).
WITH student AS (
    SELECT id FROM students WHERE id = $1 FOR UPDATE
), dropped AS (
    DELETE FROM student_courses sc USING student
     WHERE sc.student_id = student.id
    RETURNING sc.student_id, sc.course_id
), removed AS (
    DELETE FROM students s USING student
     WHERE s.id = student.id
    RETURNING s.id
), events AS (
    INSERT INTO events (type, actor, student_id, course_id, data)
    SELECT type, $2::bigint, student_id, course_id, data
      FROM (SELECT 1 AS step, 'enrollment.deleted' AS type, student_id, course_id, NULL::json AS data
              FROM dropped
             UNION ALL
            SELECT 2, 'student.deleted', NULL, NULL, json_build_object('id', id) FROM removed) AS e
     ORDER BY step, course_id
)
SELECT id FROM removed;
