import multiprocessing
import os
import time

import pytest
import torch

from trainable.cache import TrunkCache, encode
from trainable.loop import EarlyStopping, Examples, Recipe, TrainState, fit
from trainable.model import build_model
from trainable.transforms import apply_transform, eval_transform

CPU = torch.device("cpu")
# Module-wide: .ci/run runs these again with older CPU kernels (ATEN_CPU_CAPABILITY=avx2).
pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def images(tiny_data):
    return apply_transform(eval_transform(mean=tiny_data.mean, std=tiny_data.std), tiny_data.images)


def test_cached_forward_equals_full_network(images):
    """Different code paths (batches of 7 in channels-last vs one batch of 48), so fp32
    sums run in another order: the bound is relative to the logits' scale. Each conv or
    linear layer adds a relative error of about sqrt(K) * eps = 127 * 1.2e-7 = 1.5e-5 at
    its longest reduction (K = 3 * 3 * 1792); measured on AVX-512, AVX2 and default
    kernels: 1.2e-6. A real difference (BatchNorm in train mode, a layer skipped) moves
    the logits by more than 1e-1. 1e-4 sits between the two with ~100x margin on each side."""
    net = build_model("none", "block8", seed=0).eval()
    features = encode(net.trunk, images, device=CPU, precision="fp32", batch_size=7)
    with torch.no_grad():
        cached, full = net.head(features), net(images)
    assert (cached - full).abs().max() <= 1e-4 * full.abs().max()


@pytest.mark.slow  # three epochs of the whole network in float64: 20-35 s
def test_training_on_cached_features_gives_the_full_networks_losses(tiny_data, images):
    """Training the head on cached trunk outputs is training the whole (frozen-trunk) net.

    In float64 so that kernel-dependent summation order cannot decide the outcome: in
    fp32, the trunk's outputs differ by ~1e-7 relative between the paths (batch split,
    layout), and three epochs of Adam amplify that ~1e3x, to 1.6e-4 on AVX2 kernels,
    2e-6 on AVX-512 ones. In float64 the same amplification of eps = 1.1e-16 leaves
    ~1e-13; the losses also pass through fp32 (`.float()` before the loss), so they
    agree exactly on AVX-512, AVX2 and default kernels. rtol 1e-9 keeps 1e4 margin
    while a frozen trunk whose BatchNorm drifts changes these losses by ~70x."""
    labels = tiny_data.labels_of("train")
    train, val = tiny_data.split["train"], tiny_data.split["val"]
    histories = []
    for cached in (True, False):
        net = build_model("none", "block8", seed=0).double()
        with torch.no_grad():
            inputs = net.trunk.eval()(images.double()) if cached else images.double()
        optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
        state = fit(
            net,
            net.head if cached else net,
            Examples(lambda epoch, inputs=inputs: inputs[train], labels, inputs[val], tiny_data.labels_of("val")),
            Recipe(optimizer, CPU, "fp32", batch_size=8, max_epochs=3),
            TrainState(EarlyStopping(patience=50)),
        )
        histories.append([(h.train_loss, h.val_loss) for h in state.history])
    cached, full = (torch.tensor(h, dtype=torch.float64) for h in histories)
    assert torch.allclose(cached, full, rtol=1e-9, atol=0)


def test_cache_computes_once_per_key(tmp_path):
    cache = TrunkCache(str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    first = cache.get({"a": 1}, compute)
    second = cache.get({"a": 1}, compute)
    assert torch.equal(first, second) and len(calls) == 1
    cache.get({"a": 2}, compute)
    assert len(calls) == 2 and (cache.hits, cache.misses) == (1, 2)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_no_directory_means_no_cache():
    cache = TrunkCache(None)
    calls = []
    for _ in range(2):
        cache.get({"a": 1}, lambda: calls.append(1) or torch.zeros(1))
    assert len(calls) == 2


def _slow_get(directory, log):
    def compute():
        with open(log, "a") as f:
            f.write("computed\n")
        time.sleep(0.5)
        return torch.ones(3)

    TrunkCache(directory).get({"k": "shared"}, compute)


@pytest.mark.slow  # two processes that each import torch
def test_concurrent_processes_compute_once(tmp_path):
    log = str(tmp_path / "log")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_slow_get, args=(str(tmp_path / "c"), log)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert open(log).read().count("computed") == 1


@pytest.mark.slow  # encodes every image twice, then trains
def test_shards_encoded_apart_make_the_entry_a_trial_reads(tiny_data, tmp_path):
    """Two encoding tasks' shards, sealed, are the entry: the trial counts a hit and reads
    what it would have encoded itself. Batches differ (7 + 17 rows vs one of 24), so the
    bound is the forward test's: 1e-4 of the features' scale."""
    from trainable.config import TrialConfig
    from trainable.inputs import Encoding, TrialInputs, cache_key, encode_shard, encodings

    cfg = TrialConfig.from_dict({"weights": "none", "precision": "fp32", "augmentation": "static"})
    cache = TrunkCache(str(tmp_path))
    static = encodings(cfg)[1]
    for encoding, rows in ((Encoding("eval", "all"), 48), (static, 24)):
        keys = [encode_shard(cfg, tiny_data, encoding, a, b, cache) for a, b in ((0, 7), (7, rows))]
        assert keys[0] == keys[1] == cache_key(cfg, tiny_data, encoding, "fp32", CPU)
        cache.seal(keys[0], rows)
        assert encode_shard(cfg, tiny_data, encoding, 0, 7, cache) is None  # complete: nothing to do
    model = build_model("none", "block8", seed=0)
    inputs = TrialInputs(cfg, tiny_data, model, cache, CPU, "fp32")
    assert (cache.hits, cache.misses) == (4, 0)  # eval read once per split, then the static copy
    fresh = TrialInputs(cfg, tiny_data, model, TrunkCache(None), CPU, "fp32")
    for ours, theirs in ((inputs.eval["val"], fresh.eval["val"]), (inputs.train(1), fresh.train(1))):
        assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_parts_that_do_not_cover_the_entry_are_refused(tmp_path):
    cache = TrunkCache(str(tmp_path))
    cache.write_part({"k": 1}, 0, torch.zeros(3, 2))
    cache.write_part({"k": 1}, 4, torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match="do not cover"):
        cache.seal({"k": 1}, 6)
    assert cache.load({"k": 1}) is None
