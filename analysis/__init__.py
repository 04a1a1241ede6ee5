"""Results directories to tables, statistics, figures and a report; the baselines, the peer and
evaluations on other data on the same split; the statistics' calibration. Reads only files."""
