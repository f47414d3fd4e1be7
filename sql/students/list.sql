-- Keyset page: $1 the last id already seen (0 for the first page), $2 rows to fetch.
SELECT id, name, email, created_at
  FROM students
 WHERE id > $1
 ORDER BY id
 LIMIT $2;
