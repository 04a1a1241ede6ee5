"""Turns a results directory into tables (and, later, a report). Reads only files."""
