-- GET /students/{id}/courses: no row for an unknown student, else the answer's JSON,
-- built here (ordered by course id; [] when none). $1 student id.
SELECT (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'code', c.code, 'title', c.title,
                   'enrolled_at', api_time(sc.enrolled_at))
                   ORDER BY c.id), '[]')
          FROM student_courses sc
          JOIN courses c ON c.id = sc.course_id
         WHERE sc.student_id = s.id)::text AS courses
  FROM students s
 WHERE s.id = $1;
