-- Keyset page: $1 the last id already seen (0 for the first page), $2 rows to fetch.
-- `enrolled` is kept on the row only while the course has a capacity; else it is counted.
SELECT id, code, title, capacity,
       coalesce(enrolled, (SELECT count(*) FROM student_courses sc WHERE sc.course_id = c.id)) AS enrolled,
       created_at
  FROM courses c
 WHERE id > $1
 ORDER BY id
 LIMIT $2;
