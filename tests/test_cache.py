import multiprocessing
import os
import time

import pytest
import torch

from trainable.cache import TrunkCache, encode
from trainable.loop import EarlyStopping, TrainState, fit
from trainable.model import build_model
from trainable.transforms import apply_transform, eval_transform

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def images(tiny_data):
    return apply_transform(eval_transform(mean=tiny_data.mean, std=tiny_data.std), tiny_data.images)


def test_cached_forward_equals_full_network(images):
    net = build_model("none", "block8", seed=0).eval()
    features = encode(net.trunk, images, device=CPU, precision="fp32", batch_size=7)
    with torch.no_grad():
        assert torch.allclose(net.head(features), net(images), atol=1e-5)


def test_training_on_cached_features_gives_the_full_networks_losses(tiny_data, images):
    labels = tiny_data.labels_of("train")
    train, val = tiny_data.split["train"], tiny_data.split["val"]
    histories = []
    for cached in (True, False):
        net = build_model("none", "block8", seed=0)
        inputs = encode(net.trunk, images, device=CPU, precision="fp32") if cached else images
        optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
        state = fit(
            net, net.head if cached else net, optimizer, TrainState(EarlyStopping(patience=50)),
            train_inputs=lambda epoch: inputs[train], train_labels=labels,
            val_inputs=inputs[val], val_labels=tiny_data.labels_of("val"),
            batch_size=8, max_epochs=3, seed=0, device=CPU, precision="fp32",
        )  # fmt: skip
        histories.append([(h.train_loss, h.val_loss) for h in state.history])
    assert torch.allclose(torch.tensor(histories[0]), torch.tensor(histories[1]), rtol=1e-4)


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
