-- DELETE /students/{id}/courses/{course_id}. $1 student id, $2 course id, $3 actor.
-- Locks the student like every enrollment write, then the course as assign.sql locks it:
-- FOR NO KEY UPDATE when this statement's snapshot shows it with a capacity (to give the
-- seat back), else FOR KEY SHARE (so that a capacity set meanwhile counts this removal
-- once: courses/lock.sql). When the course has been given a capacity since the snapshot,
-- nothing is written and `stale_course_ids` names it: the caller runs it again.
-- Answers whether each existed.
WITH student AS (
    SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE
), limited AS (
    SELECT id, capacity, enrolled
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c, student WHERE c.id = $2 AND c.capacity IS NOT NULL))
       FOR NO KEY UPDATE
), unlimited AS (
    SELECT id, capacity
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c, student WHERE c.id = $2 AND c.capacity IS NULL))
       FOR KEY SHARE
), stale AS (
    SELECT coalesce(array_agg(id), '{}') AS course_ids FROM unlimited WHERE capacity IS NOT NULL
), removed AS (
    DELETE FROM student_courses
     WHERE student_id = (SELECT id FROM student) AND course_id = $2
       AND (SELECT cardinality(course_ids) FROM stale) = 0
       AND (SELECT count(*) FROM limited) >= 0  -- locked before it is removed, like the others
    RETURNING course_id
), counted AS (
    -- From the row as `limited` locked it, with its capacity: see assign.sql.
    UPDATE courses c
       SET enrolled = l.enrolled - 1, capacity = l.capacity
      FROM limited l
     WHERE c.id = l.id
       AND l.capacity IS NOT NULL
       AND l.id IN (SELECT course_id FROM removed)
), event AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT 'enrollment.deleted', $3::bigint, ARRAY[$1::bigint], ARRAY[course_id] FROM removed
)
SELECT EXISTS (SELECT FROM student) AS student_found,
       EXISTS (SELECT FROM removed) AS enrollment_found,
       (SELECT course_ids FROM stale) AS stale_course_ids;
