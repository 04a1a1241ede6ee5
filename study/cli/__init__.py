"""The command line: study.run's options, parsed, and the StudySpec they give (a resumed study's
from its study.json)."""
