"""Fine-tuning InceptionResnetV1 for three age groups: data, transforms, model,
trunk cache, training loop and the Ray Tune trial that wraps them.

Only `trainable.tune_trial` imports Ray; everything else runs in a plain process.
"""
