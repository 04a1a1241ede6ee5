import pytest

from study.grids import BASELINE, GRIDS, expand, parse_where
from trainable.config import TrialConfig
from trainable.errors import UserError


def test_paper_grid_holds_the_seven_experiments():
    configs = {c.experiment: c for c in expand("paper", seeds=1, overrides={})}
    assert sorted(configs) == list(range(1, 8))

    def differs(n):
        return {k: getattr(configs[n], k) for k in BASELINE if getattr(configs[n], k) != BASELINE[k]}

    assert differs(1) == {}
    assert differs(2) == {"batch_size": 8}
    assert differs(3) == {"augmentation": "none"}
    assert differs(4) == {"freeze": "none"}
    assert differs(5) == {"lr": 1e-3}
    assert differs(6) == {"optimizer": "sgd", "lr": 1e-5}
    assert differs(7) == {"optimizer": "sgd"} and configs[7].lr == 1e-4
    assert configs[1].name == "baseline"
    assert all(isinstance(c, TrialConfig) and c.max_epochs == 400 for c in configs.values())


def test_seeds_share_a_config_id():
    configs = expand("paper", seeds=3, overrides={})
    assert len(configs) == 21
    ids = {}
    for c in configs:
        ids.setdefault(c.experiment, set()).add(c.config_id)
    assert all(len(v) == 1 for v in ids.values())
    assert len({next(iter(v)) for v in ids.values()}) == 7
    assert {c.seed for c in configs} == {0, 1, 2}


def test_overrides_apply_to_every_trial():
    configs = expand("paper", seeds=1, overrides={"weights": "none", "max_epochs": 3})
    assert all(c.weights == "none" and c.max_epochs == 3 for c in configs)


def test_bad_grid_and_values():
    with pytest.raises(UserError, match="valid grids"):
        expand("huge", seeds=1, overrides={})
    with pytest.raises(UserError, match="max_epochs"):
        expand("paper", seeds=1, overrides={"max_epochs": 0})
    with pytest.raises(UserError, match="seeds"):
        expand("paper", seeds=0, overrides={})


def test_smoke_runs_offline():
    assert len(GRIDS["smoke"].experiments) == 2
    assert all(c.weights == "none" for c in expand("smoke", seeds=1, overrides={}))


def test_extended_grid_crosses_every_axis():
    configs = expand("extended", seeds=1, overrides={})
    assert len(configs) == 3 * 4 * 2 * 3 * 3 and GRIDS["extended"].scheduler == "asha"
    keys = ("optimizer", "momentum", "lr", "batch_size", "freeze", "augmentation")
    combos = {tuple(getattr(c, k) for k in keys) for c in configs}
    assert len(combos) == len(configs)
    assert {c.lr for c in configs} == {1e-5, 1e-4, 1e-3, 1e-2}
    assert {(c.optimizer, c.momentum) for c in configs} == {("adam", 0), ("sgd", 0), ("sgd", 0.9)}
    assert {c.freeze for c in configs} == {"block8", "repeat_3", "none"}
    assert {c.augmentation for c in configs} == {"none", "static", "online"}


def test_where_filters_by_typed_settings():
    where = parse_where(["freeze=repeat_3", "lr=1e-3", "batch_size=8"])
    assert where == {"freeze": "repeat_3", "lr": 1e-3, "batch_size": 8}
    configs = expand("extended", seeds=2, overrides={}, where=where)
    assert len(configs) == 3 * 3 * 2  # optimizers x augmentations x seeds
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_where(["freeze"])
    with pytest.raises(UserError, match="No trial of grid"):
        expand("paper", seeds=1, overrides={}, where={"lr": 0.5})


def test_where_filters_any_config_key_the_experiment_number_too():
    configs = expand("paper", seeds=3, overrides={}, where=parse_where(["experiment=4"]))
    assert {c.experiment for c in configs} == {4} and len(configs) == 3
    assert [c.seed for c in expand("paper", seeds=3, overrides={}, where={"seed": 2})] == [2] * 7
