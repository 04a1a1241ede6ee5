"""Benchmarks, all in one place, each against the naive way in the same run where there is one
(`python -m study.bench --help`): `kernels` (the training kernels and Ray's overhead), `paper`
(the paper grid end to end), `scale` (growth with the dataset), `serving`, `progress_log` (a
study's log read back), `calibration` (the report's statistics on simulated studies whose answer
is known), `search_vs_grid` (a search against the extended grid at one budget); `measure` holds
the timing and memory tools, `main` the command line. They sit above every layer: they may import
study, analysis and trainable. Benchmarks print measurements; tests assert only that they ran."""
