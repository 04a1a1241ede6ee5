"""Test-only: run the study CLI with faults injected around the production trainable.

    FACE_AGE_TEST_FAULT=EPOCH:DIR python -m tests.faults --grid smoke ...
        each trial raises once, before reporting EPOCH (DIR records which trials did),
        to test retries from checkpoints;
    FACE_AGE_TEST_STALL_CHECKPOINT=DIR python -m tests.faults --grid smoke ...
        a worker's first checkpoint stalls half-written (files saved, not yet reported)
        after leaving a marker in DIR, so a test can kill the study there.

The wrapper replaces `study.tuning.tune_setup.train_face_age` in the driver and is shipped
to Ray's workers by value, so nothing of it lives in the product.
"""

import functools
import os
import sys
import time

from ray import cloudpickle

FAULT_ENV = "FACE_AGE_TEST_FAULT"
STALL_ENV = "FACE_AGE_TEST_STALL_CHECKPOINT"


def with_faults(train, fault: str | None, stall_dir: str | None):
    @functools.wraps(train)  # the same trainable name, so a plain `study.run --resume` restores it
    def faulty_train(config, **kwargs):
        import trainable.tune_trial as tune_trial

        real_report = tune_trial.tune.report

        def report(metrics, checkpoint=None):
            if fault:
                at, directory = fault.split(":", 1)
                marker = os.path.join(directory, f"{config['config_id']}-seed{config['seed']}")
                if metrics["epoch"] == int(at) and not os.path.exists(marker):
                    open(marker, "w").close()
                    raise RuntimeError(f"fault injected at epoch {at} by {FAULT_ENV}")
            if stall_dir and checkpoint is not None:
                open(os.path.join(stall_dir, f"stalled-{os.getpid()}"), "w").close()
                time.sleep(600)
            real_report(metrics, checkpoint=checkpoint)

        tune_trial.tune.report = report  # this worker process only
        try:
            return train(config, **kwargs)
        finally:
            tune_trial.tune.report = real_report

    return faulty_train


def main() -> int:
    import study.tuning.tune_setup
    from study.run import main as study_main

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    study.tuning.tune_setup.train_face_age = with_faults(
        study.tuning.tune_setup.train_face_age, os.environ.get(FAULT_ENV), os.environ.get(STALL_ENV)
    )
    return study_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
