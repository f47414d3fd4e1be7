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
    INSERT INTO events (type, actor, student_ids, course_ids, data)
    SELECT type, $2::bigint, student_ids, course_ids, data
      FROM (SELECT 1 AS step, 'enrollment.deleted' AS type, array_agg(student_id ORDER BY course_id) AS student_ids,
                   array_agg(course_id ORDER BY course_id) AS course_ids, NULL::json AS data
              FROM dropped
            HAVING count(*) > 0
             UNION ALL
            SELECT 2, 'student.deleted', NULL, NULL, json_build_object('id', id) FROM removed) AS e
     ORDER BY step
)
SELECT id FROM removed;
