-- PUT /students/{id}/courses, run after lock_student in the same transaction. $1 student id,
-- $2 course ids (bigint[], may be empty), $3 actor. Replaces the student's set only when
-- every id names a course, recording enrollment.deleted for each course dropped and
-- enrollment.created for each added; answers the unknown ids and the new list as JSON.
WITH requested AS (
    SELECT DISTINCT unnest($2::bigint[]) AS course_id
), known AS (
    SELECT c.id FROM courses c JOIN requested r ON r.course_id = c.id FOR KEY SHARE OF c
), unknown AS (
    SELECT coalesce(array_agg(r.course_id ORDER BY r.course_id), '{}') AS course_ids
      FROM requested r
     WHERE r.course_id NOT IN (SELECT id FROM known)
), removed AS (
    DELETE FROM student_courses sc
     USING unknown
     WHERE sc.student_id = $1
       AND cardinality(unknown.course_ids) = 0
       AND sc.course_id NOT IN (SELECT id FROM known)
    RETURNING sc.course_id
), inserted AS (
    INSERT INTO student_courses (student_id, course_id)
    SELECT $1, known.id
      FROM known, unknown
     WHERE cardinality(unknown.course_ids) = 0
        ON CONFLICT (student_id, course_id) DO NOTHING
    RETURNING course_id, enrolled_at
), events AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT type, $3::bigint, array_agg($1::bigint), array_agg(course_id ORDER BY course_id)
      FROM (SELECT 1 AS step, course_id, 'enrollment.deleted' AS type FROM removed
             UNION ALL
            SELECT 2, course_id, 'enrollment.created' FROM inserted) AS e
     GROUP BY step, type
     ORDER BY step
), enrolled AS (
    SELECT course_id, enrolled_at FROM student_courses
     WHERE student_id = $1 AND course_id IN (SELECT id FROM known)
     UNION ALL
    SELECT course_id, enrolled_at FROM inserted
)
SELECT (SELECT course_ids FROM unknown) AS unknown_course_ids,
       (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'code', c.code, 'title', c.title,
                   'enrolled_at', api_time(e.enrolled_at))
                   ORDER BY c.id), '[]')
          FROM enrolled e
          JOIN courses c ON c.id = e.course_id)::text AS courses;
