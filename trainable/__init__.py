"""Fine-tuning InceptionResnetV1 for three age groups. Data flows one way: `data/` (images
on disk to a checked `FaceData`) -> `transforms` -> `model` (trunk/head split) and `cache`
(trunk outputs) -> `inputs` (what a trial's network sees) -> `loop` (epochs, stop rules) ->
`trial` (one trial, and its best model's scores) -> `tune_trial` (the Ray Tune trainable).
`serving/` uses a trained model; `results/` is what a trial reports, where it lands and how it
is stored and written, shared with study/ and analysis/.

Only `trainable.tune_trial` imports Ray; everything else runs in a plain process.
"""
