-- GET /courses/{id}/students, a keyset page. $1 course id, $2 the last student id seen
-- (0 for the first page), $3 rows to fetch. No row at all: unknown course; one row of
-- NULLs: a course with no (more) students.
SELECT s.id, s.name, s.email, s.created_at
  FROM courses c
  LEFT JOIN LATERAL (
        SELECT st.id, st.name, st.email, st.created_at
          FROM student_courses sc
          JOIN students st ON st.id = sc.student_id
         WHERE sc.course_id = c.id AND sc.student_id > $2
         ORDER BY sc.student_id
         LIMIT $3
       ) s ON true
 WHERE c.id = $1;
