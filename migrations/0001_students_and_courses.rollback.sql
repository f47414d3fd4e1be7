DROP TABLE courses;
DROP TABLE students;
