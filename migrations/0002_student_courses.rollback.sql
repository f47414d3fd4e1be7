DROP TABLE student_courses;
