-- The student's enrollments go with it (ON DELETE CASCADE).
DELETE FROM students
 WHERE id = $1
RETURNING id;
