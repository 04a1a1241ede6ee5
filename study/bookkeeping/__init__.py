"""The study's records: its plan and folder, its lock, study.json, resuming it, its summary and best model."""
