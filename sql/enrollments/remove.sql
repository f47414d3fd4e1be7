-- DELETE /students/{id}/courses/{course_id}. $1 student id, $2 course id, $3 actor.
-- Locks the student like every enrollment write; answers whether each existed.
WITH student AS (
    SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE
), removed AS (
    DELETE FROM student_courses
     WHERE student_id = (SELECT id FROM student) AND course_id = $2
    RETURNING course_id
), event AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT 'enrollment.deleted', $3::bigint, ARRAY[$1::bigint], ARRAY[course_id] FROM removed
)
SELECT EXISTS (SELECT FROM student) AS student_found,
       EXISTS (SELECT FROM removed) AS enrollment_found;
