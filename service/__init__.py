"""Enrollment service: students, courses and who takes what, over HTTP."""

__version__ = "0.1.0"
