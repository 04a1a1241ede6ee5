import pytest

from trainable.config import TrialConfig
from trainable.errors import UserError


def test_defaults_are_experiment_one():
    cfg = TrialConfig.from_dict({})
    assert (cfg.freeze, cfg.batch_size, cfg.augmentation, cfg.optimizer, cfg.lr) == (
        "block8",
        32,
        "static",
        "adam",
        1e-4,
    )
    assert cfg.max_epochs == 400 and cfg.uses_cache


def test_round_trip_and_int_to_float():
    cfg = TrialConfig.from_dict({"lr": 1, "seed": 3})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_key_is_named():
    with pytest.raises(UserError, match=r"'learning_rate'"):
        TrialConfig.from_dict({"learning_rate": 1e-3})


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ({"freeze": "block9"}, "freeze"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 8.0}, "batch_size"),
        ({"lr": "fast"}, "lr"),
        ({"momentum": 0.9}, "momentum"),  # Adam with momentum makes no sense
        ({"seed": True}, "seed"),
    ],
)
def test_bad_values_are_refused(bad, pattern):
    with pytest.raises(UserError, match=pattern):
        TrialConfig.from_dict(bad)


def test_cache_applies_only_to_a_frozen_trunk_with_fixed_inputs():
    assert not TrialConfig.from_dict({"freeze": "none"}).uses_cache
    assert not TrialConfig.from_dict({"augmentation": "online"}).uses_cache
    assert TrialConfig.from_dict({"augmentation": "none", "freeze": "repeat_3"}).uses_cache
