"""Trial packing and ordering (no Ray cluster needed)."""

import json

from study.tuning.tune_setup import EpochBudget, make_scheduler, trial_cpus
from tests.conftest import epoch_row, final_row
from trainable.results.layout import BUDGET_FILE


def test_cached_trials_take_one_core_full_network_trials_up_to_four():
    cached = {"freeze": "block8", "augmentation": "static"}
    full = {"freeze": "none", "augmentation": "static"}
    online = {"freeze": "block8", "augmentation": "online"}
    assert trial_cpus(cached, None, node_cpus=16) == 1
    assert trial_cpus(full, None, node_cpus=2) == 2
    assert trial_cpus(online, None, node_cpus=16) == 4
    assert trial_cpus(full, 3.0, node_cpus=16) == 3  # --cpus-per-trial wins


def test_asha_accepts_a_grace_period_longer_than_the_trials():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    # ASHA itself asserts grace_period <= max_t; a 5-epoch study with the default 10 must run.
    assert isinstance(make_scheduler("asha", max_epochs=5, grace_period=10), ASHAScheduler)
    assert isinstance(make_scheduler("none", max_epochs=5, grace_period=10), FIFOScheduler)


def test_encoding_shards_cover_the_images_once_and_use_every_slot():
    from study.tuning.encoding import MAX_SHARD, shards

    for n, slots in ((48, 2), (300, 2), (5000, 2), (100_000, 64), (10, 8)):
        parts = shards(n, slots)
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
        assert all(stop - start <= MAX_SHARD for start, stop in parts)
    assert len(shards(300, 2)) == 2 and len(shards(5000, 2)) == 5


def test_the_epoch_budget_counts_every_report_as_an_epoch_and_records_when_spent(tmp_path):
    budget = EpochBudget(4, str(tmp_path))
    for result in (
        epoch_row(epoch=1),
        epoch_row(epoch=2),
        final_row(epoch=3, best_epoch=2, stopped_by="early_stopping"),
    ):
        assert budget("trial", result) is False  # the final report is the trial's last epoch
    assert not budget.stop_all() and not (tmp_path / BUDGET_FILE).exists()
    budget("other", epoch_row(epoch=1))
    assert budget.stop_all()
    assert json.loads((tmp_path / BUDGET_FILE).read_text()) == {"budget_epochs": 4, "spent": 4}
