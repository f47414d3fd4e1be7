-- `enrolled` is kept on the row only while the course has a capacity; else it is counted.
SELECT id, code, title, capacity,
       coalesce(enrolled, (SELECT count(*) FROM student_courses sc WHERE sc.course_id = c.id)) AS enrolled,
       created_at
  FROM courses c
 WHERE id = $1;
