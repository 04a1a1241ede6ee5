"""A study's results as files: their layout (layout.py), where they are stored (storage.py: a folder
or object storage), how they are written whole (atomic_io.py), what a trial reports (records.py)
and study.json's schema (study_record.py). Shared by trainable, study and analysis."""
