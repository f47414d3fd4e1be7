SELECT id, code, title, created_at
  FROM courses
 WHERE id = $1;
