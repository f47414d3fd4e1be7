SELECT id, name, email, created_at
  FROM students
 WHERE id = $1;
