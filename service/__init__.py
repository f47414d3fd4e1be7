"""Enrollment service: students, courses and who takes what, over HTTP."""
