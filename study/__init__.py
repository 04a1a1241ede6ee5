"""The study: named grids of trial configurations, run on Ray Tune from the CLI."""
