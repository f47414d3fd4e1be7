-- $1 name, $2 email. A taken email raises unique_violation on students_email_key.
INSERT INTO students (name, email)
VALUES ($1, $2)
RETURNING id, name, email, created_at;
