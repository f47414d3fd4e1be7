-- $1 id; $2 code and $3 title, each NULL to keep the current value.
UPDATE courses
   SET code  = coalesce($2, code),
       title = coalesce($3, title)
 WHERE id = $1
RETURNING id, code, title, created_at;
