-- $1 id; $2 name and $3 email, each NULL to keep the current value.
UPDATE students
   SET name  = coalesce($2, name),
       email = coalesce($3, email)
 WHERE id = $1
RETURNING id, name, email, created_at;
