import io

import numpy as np
import pytest
import torch

from trainable.cache import TrunkCache
from trainable.config import TrialConfig
from trainable.transforms import apply_transform
from trainable.trial import run_trial

pytestmark = pytest.mark.numerics  # rerun with older CPU kernels in .ci/run


def config(**changes):
    base = {
        "weights": "none",
        "lr": 1e-3,
        "batch_size": 8,
        "max_epochs": 6,
        "patience": 50,
        "checkpoint_every": 2,
        "precision": "fp32",
    }
    return TrialConfig.from_dict({**base, **changes})


def run(cfg, data, cache_dir, **kwargs):
    reports = []
    final = run_trial(cfg, data, cache=TrunkCache(cache_dir), report=lambda m, c: reports.append((m, c)), **kwargs)
    return final, reports


def through_disk(payload):
    """What a checkpoint becomes after torch.save / torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_reports_every_epoch_and_checkpoints(tiny_data, trunk_cache):
    final, reports = run(config(), tiny_data, trunk_cache)
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3, 4, 5, 6]
    assert [c is not None for _, c in reports] == [False, True, False, True, False, True]
    last_metrics, last_checkpoint = reports[-1]
    assert last_metrics == final and "model" in last_checkpoint
    assert final["stopped_by"] == "max_epochs" and 1 <= final["best_epoch"] <= 6
    for split in ("train", "val", "test"):
        matrix = np.array(final[f"{split}_confusion"])
        assert matrix.shape == (3, 3) and np.allclose(matrix.sum(1), 1, atol=1e-3)
        assert 0 <= final[f"{split}_acc_best"] <= 1
    assert final["val_acc_best"] > 0.5  # the tiny classes are learnable


def test_early_stopping_ends_the_trial(tiny_data, trunk_cache):
    final, reports = run(config(patience=2, max_epochs=40, lr=5e-3), tiny_data, trunk_cache)
    assert final["stopped_by"] == "early_stopping"
    assert final["epoch"] == final["best_epoch"] + 2 == len(reports)


def test_same_seed_same_metrics_other_seed_other_metrics(tiny_data, trunk_cache):
    a, _ = run(config(seed=1, max_epochs=2), tiny_data, trunk_cache)
    b, _ = run(config(seed=1, max_epochs=2), tiny_data, None)  # cache hit vs fresh encode
    c, _ = run(config(seed=2, max_epochs=2), tiny_data, trunk_cache)
    keys = ("train_loss", "val_loss", "val_acc_best", "test_acc_best", "best_epoch")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["train_loss"] != c["train_loss"]


def test_resume_from_a_checkpoint_repeats_an_uninterrupted_run(tiny_data, trunk_cache):
    uninterrupted, _ = run(config(), tiny_data, trunk_cache)

    class Crash(Exception):
        pass

    saved = []

    def crash_at_five(metrics, checkpoint):
        if checkpoint is not None:
            saved.append(through_disk(checkpoint))
        if metrics["epoch"] == 5:
            raise Crash

    with pytest.raises(Crash):
        run_trial(config(), tiny_data, cache=TrunkCache(trunk_cache), report=crash_at_five)
    assert saved[-1]["state"]["epoch"] == 4
    resumed, reports = run(config(), tiny_data, trunk_cache, resume=saved[-1])
    assert [m["epoch"] for m, _ in reports] == [5, 6]
    for key in ("train_loss", "val_loss", "best_epoch", "val_acc_best", "test_acc_best"):
        assert resumed[key] == uninterrupted[key], key


@pytest.mark.parametrize(
    "changes",
    [{"augmentation": "online"}, pytest.param({"freeze": "none"}, marks=pytest.mark.slow)],  # whole network: ~10 s
    ids=["online", "full-network"],
)
def test_full_network_paths(tiny_data, tmp_path, changes):
    final, reports = run(config(max_epochs=1, **changes), tiny_data, str(tmp_path))
    assert len(reports) == 1 and np.isfinite(final["train_loss"])
    assert list(tmp_path.iterdir()) == []  # nothing cacheable on these paths


def test_resume_from_the_final_checkpoint_only_rescores(tiny_data, trunk_cache):
    final, reports = run(config(max_epochs=3), tiny_data, trunk_cache)
    payload = through_disk(reports[-1][1])
    assert "optimizer" not in payload and payload["state"]["best_weights"] == {}
    again, more = run(config(max_epochs=3), tiny_data, trunk_cache, resume=payload)
    assert len(more) == 1  # no epoch is trained again
    same = lambda d: {k: v for k, v in d.items() if k != "inputs_seconds"}  # noqa: E731
    assert same(again) == same(final)


def test_online_augmentation_from_cached_views(tiny_data, tmp_path):
    from trainable.inputs import TrialInputs
    from trainable.model import build_model

    cfg = config(augmentation="online", augment_views=3)
    assert cfg.uses_cache
    model = build_model("none", "block8", 0)
    inputs = TrialInputs(cfg, tiny_data, model, TrunkCache(str(tmp_path)), torch.device("cpu"), "fp32")
    assert len(list(tmp_path.glob("*/manifest.json"))) == 1 + 3  # eval outputs + three augmented views
    first, second = inputs.train(1), inputs.train(2)
    assert first.shape == (24, 1792, 3, 3) and not torch.equal(first, second)
    assert torch.equal(first, inputs.train(1))  # the draw comes from (seed, epoch) alone
    views = inputs._views
    assert all(any(torch.equal(first[i], views[k, i]) for k in range(3)) for i in range(24))
    final, reports = run(cfg, tiny_data, str(tmp_path))
    assert len(reports) == 6 and final["val_acc_best"] > 0.5


@pytest.mark.parametrize("lr", [1e6, 1e30])
def test_a_diverging_trial_ends_normally_as_diverged(tiny_data, trunk_cache, lr):
    final, reports = run(config(optimizer="sgd", lr=lr, max_epochs=30), tiny_data, trunk_cache)
    assert final["stopped_by"] == "diverged" and final["epoch"] == len(reports) < 30
    assert reports[-1][1] is not None and "model" in reports[-1][1]  # the final checkpoint is written
    if final["best_epoch"]:  # scored at the best finite epoch
        assert 0 <= final["test_acc_best"] <= 1 and len(final["test_pred"]) == 12
    else:  # no finite epoch at all: nothing to score, and it says so
        assert final["test_acc_best"] is None and np.isnan(final["best_val_loss"])  # NaN: Tune ranks on it


def test_facenet_normalization_is_facenet_pytorchs_own():
    from facenet_pytorch import fixed_image_standardization

    from trainable.transforms import eval_transform, normalization

    image = np.random.default_rng(0).integers(0, 256, (200, 160, 3), dtype=np.uint8)
    mean, std = normalization("facenet", (0.0,) * 3, (1.0,) * 3)
    ours = apply_transform(eval_transform(mean=mean, std=std), [image])
    pixels = torch.tensor(image).permute(2, 0, 1).float()[:, 30:170, 10:150]  # the 140-px centre crop
    theirs = torch.nn.functional.interpolate(
        fixed_image_standardization(pixels)[None], size=(160, 160), mode="bilinear", antialias=True
    )
    # Same arithmetic in another order ((x/255 - m)/s vs (x - 127.5)/128): fp32 rounding, |values| <= 1.
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_class_balanced_scores_and_options(tiny_data, trunk_cache):
    """Balanced accuracy and macro-F1 are reported per split (sklearn's definitions);
    class weights and the balanced sampler change training but not what val loss means."""
    from sklearn.metrics import balanced_accuracy_score

    plain, _ = run(config(max_epochs=3), tiny_data, trunk_cache)
    for split in ("train", "val", "test"):
        assert 0 <= plain[f"{split}_bacc_best"] <= 1 and 0 <= plain[f"{split}_f1_best"] <= 1
    y = tiny_data.labels_of("test").numpy()
    assert plain["test_bacc_best"] == pytest.approx(balanced_accuracy_score(y, plain["test_pred"]), abs=1e-12)
    resampled, _ = run(config(max_epochs=3, sampler="balanced"), tiny_data, trunk_cache)
    assert resampled["train_loss"] != plain["train_loss"]  # other draws of the training images


def test_imbalance_weights_give_every_class_the_same_total():
    from trainable.trial import imbalance_weights

    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 60)
    class_w, no_sampling = imbalance_weights(config(class_weights="balanced"), labels, 3)
    no_weights, sample_w = imbalance_weights(config(sampler="balanced"), labels, 3)
    assert class_w.tolist() == pytest.approx([100 / 30, 100 / 90, 100 / 180]) and no_sampling is no_weights is None
    totals = torch.bincount(labels, weights=sample_w.double())  # each class: n / classes
    assert totals.tolist() == pytest.approx([100 / 3] * 3)
    assert imbalance_weights(config(), labels, 3) == (None, None)
    class_w, _ = imbalance_weights(config(class_weights="balanced"), torch.tensor([0, 0, 2]), 3)
    assert class_w[1] == 0  # a class with no training image: nothing to weight


def test_class_weights_and_the_balanced_sampler_together_are_refused():
    """Both corrections at once learn an inverted prior (counts 100/20/5 -> 0.04/0.20/0.76)."""
    from trainable.errors import UserError

    with pytest.raises(UserError, match="corrects the class imbalance twice"):
        config(class_weights="balanced", sampler="balanced")


@pytest.mark.parametrize(
    "changes",
    [{}, pytest.param({"freeze": "none"}, marks=pytest.mark.slow), {"sampler": "balanced"}],
    ids=["cached", "full-network", "sampler"],
)
def test_a_training_split_one_past_a_whole_batch_trains(tiny_data, trunk_cache, changes):
    """24 training images at batch 23 leave a last batch of one: it is merged, not a crash."""
    assert len(tiny_data.split["train"]) % 23 == 1
    final, reports = run(config(batch_size=23, max_epochs=1, **changes), tiny_data, trunk_cache)
    assert len(reports) == 1 and np.isfinite(final["train_loss"])


def test_a_frozen_trunk_runs_at_its_own_precision_inside_any_autocast():
    """The uncached path (the whole model under the trained part's autocast) gives the trained
    part the same trunk outputs as the cache does (encode at the trunk's precision)."""
    from trainable.cache import encode
    from trainable.device import autocast
    from trainable.model import build_model

    cpu = torch.device("cpu")
    model = build_model("none", "block8", 0)
    x = torch.randn(4, 3, 160, 160).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(cpu, "bf16"):
        features = model.forward_features(x)
    assert features.dtype == torch.float32
    assert torch.equal(features, encode(model.trunk, x, device=cpu, precision="fp32"))


@pytest.mark.slow  # online augmentation through the whole trunk: 10-16 s
def test_cached_and_uncached_trials_of_a_configuration_train_at_the_same_precision(tiny_data, tmp_path):
    """Online augmentation from cached views and from fresh draws: one trained precision, recorded
    with the trunk's, and the model file says both."""
    changes = {"augmentation": "online", "max_epochs": 1, "train_precision": "bf16"}
    finals = [run(config(augment_views=views, **changes), tiny_data, str(tmp_path)) for views in (3, 0)]
    for (final, reports), cached in zip(finals, (True, False), strict=True):
        assert (final["precision"], final["precision_trained"]) == ("fp32", "bf16"), cached
        record = reports[-1][1]["model"]
        assert (record["precision"], record["train_precision"]) == ("fp32", "bf16")
