"""The command line: options checked into a StudySpec, and the progress it prints while a study runs."""
