-- DELETE /students/{id}/courses/{course_id}. $1 student id, $2 course id, $3 actor.
-- Locks the student like every enrollment write, then the course FOR KEY SHARE (so a
-- capacity set meanwhile counts this removal once: courses/lock.sql) and, if it has a
-- capacity, FOR NO KEY UPDATE to give its seat back. Answers whether each existed.
WITH student AS (
    SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE
), course AS (
    SELECT id, capacity FROM courses WHERE id = $2 AND EXISTS (SELECT FROM student) FOR KEY SHARE
), limited AS (
    SELECT id, capacity, enrolled
      FROM courses
     WHERE id = ANY (ARRAY(SELECT id FROM course WHERE capacity IS NOT NULL))
       FOR NO KEY UPDATE
), removed AS (
    DELETE FROM student_courses
     WHERE student_id = (SELECT id FROM student) AND course_id = $2
    RETURNING course_id
), counted AS (
    -- From the row as `limited` locked it, with its capacity: see assign.sql.
    UPDATE courses c
       SET enrolled = l.enrolled - 1, capacity = l.capacity
      FROM limited l
     WHERE c.id = l.id
       AND l.id IN (SELECT course_id FROM removed)
), event AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT 'enrollment.deleted', $3::bigint, ARRAY[$1::bigint], ARRAY[course_id] FROM removed
)
SELECT EXISTS (SELECT FROM student) AS student_found,
       EXISTS (SELECT FROM removed) AS enrollment_found;
