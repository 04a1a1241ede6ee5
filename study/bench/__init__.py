"""Benchmarks of the study on this machine, each against the naive way in the same run
(`python -m study.bench --help`): `kernels` (the training kernels and Ray's overhead),
`paper` (the paper grid end to end), `scale` (growth with the dataset), `measure` (timing
and memory tools), `cli` (the command line). Benchmarks print measurements; tests assert
only that they ran."""
