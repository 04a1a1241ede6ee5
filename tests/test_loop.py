import math

import pytest
import torch
from torch import nn

from trainable.cache import encode
from trainable.loop import EarlyStopping, Examples, Recipe, TrainState, fit
from trainable.model import build_model, trainable_state
from trainable.seeds import derive_seed
from trainable.transforms import apply_transform, eval_transform

pytestmark = pytest.mark.numerics  # rerun with older CPU kernels in .ci/run

CPU = torch.device("cpu")


def test_early_stopping_on_a_scripted_sequence():
    stopper = EarlyStopping(patience=3, min_delta=0.01)
    losses = [1.0, 0.8, 0.9, 0.795, 0.7, 0.75, 0.76, 0.8, 0.5]
    stopped_at = None
    for epoch, loss in enumerate(losses, start=1):
        stopper.step(epoch, loss)
        if stopper.should_stop:
            stopped_at = epoch
            break
    # 0.795 is within min_delta of 0.8: no improvement; 0.7 is the last best.
    assert (stopper.best_epoch, stopper.best_loss, stopped_at) == (5, 0.7, 8)


def test_derive_seed_is_stable_and_distinct():
    # Pinned: a seed that changed between processes or releases (hash(), an unseeded RNG) would break
    # resume and reproduction; this value is sha256("1:order:2")'s first 8 bytes, little-endian, >> 1.
    assert derive_seed(1, "order", 2) == 4435401752508574843
    assert 0 <= derive_seed(2**40, "online", 17) < 2**63
    assert len({derive_seed(1, "order", 2), derive_seed(1, "order", 3), derive_seed(2, "order", 2)}) == 3


def train_head_with_sgd(data, lr, max_epochs):
    """Fit the head on cached features with plain SGD at `lr`; return the state, the net
    and a copy of the trainable weights after every epoch."""
    net = build_model("none", "block8", seed=0)
    images = apply_transform(eval_transform(mean=data.mean, std=data.std), data.images)
    features = encode(net.trunk, images, device=CPU, precision="fp32")
    train, val = data.split["train"], data.split["val"]
    snapshots = {}
    state = fit(
        net,
        net.head,
        Examples(lambda epoch: features[train], data.labels_of("train"), features[val], data.labels_of("val")),
        Recipe(torch.optim.SGD(net.head.parameters(), lr=lr), CPU, "fp32", batch_size=8, max_epochs=max_epochs),
        TrainState(EarlyStopping(patience=100)),
        on_epoch=lambda state, done: snapshots.__setitem__(state.epoch, trainable_state(net)),
    )
    return state, net, snapshots


def test_fit_restores_a_copy_of_the_best_epoch(tiny_data):
    state, net, snapshots = train_head_with_sgd(tiny_data, lr=0.5, max_epochs=8)  # too high: val loss wanders
    best = state.stopper.best_epoch
    assert best < 8, "the scenario needs a best epoch before the last"
    losses = [h.val_loss for h in state.history]
    assert losses[best - 1] == min(losses)
    restored = trainable_state(net)
    assert all(torch.equal(restored[k], snapshots[best][k]) for k in restored)
    assert not all(torch.equal(restored[k], snapshots[8][k]) for k in restored)


def run_rule(stopper, losses):
    """Feed (train, val) pairs; return the epoch the stopper stopped at (None: never)."""
    for epoch, (train, val) in enumerate(losses, start=1):
        stopper.step(epoch, val, train)
        if stopper.should_stop:
            return epoch
    return None


def test_the_2021_stop_rule_on_a_scripted_sequence():
    # Epochs 1-3 improve. From epoch 4 val loss sits above the mean of all previous
    # val losses while train loss keeps falling below its running mean.
    train = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    val = [1.0, 0.9, 0.8, 1.2, 1.3, 1.4, 1.5, 1.6]
    stopper = EarlyStopping(patience=100, rule="paper", es_rounds=3)
    assert run_rule(stopper, zip(train, val, strict=False)) == 7  # streak 4 (epochs 4-7) > es_rounds 3
    assert (stopper.best_epoch, stopper.best_loss, stopper.stopped_by) == (3, 0.8, "early_stopping")


def test_the_2021_stop_rule_counts_consecutive_epochs_only():
    # Epoch 4 breaks the streak (val below the running mean), so the count restarts.
    train = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    val = [1.0, 1.1, 1.2, 0.5, 1.3, 1.4, 1.5]
    assert run_rule(EarlyStopping(patience=100, rule="paper", es_rounds=2), zip(train, val, strict=False)) == 7
    assert run_rule(EarlyStopping(patience=100, rule="paper", es_rounds=3), zip(train, val, strict=False)) is None
    # Rising val loss with rising train loss is not the rule's overfitting signal.
    rising = [(1.0 + e, 1.0 + e) for e in range(10)]
    assert run_rule(EarlyStopping(patience=100, rule="paper", es_rounds=1), rising) is None


def test_a_non_finite_loss_stops_as_diverged_keeping_the_best_finite_epoch():
    stopper = EarlyStopping(patience=10)
    losses = [(1.0, 0.9), (0.8, 0.7), (5.0, 40.0), (float("inf"), float("nan")), (0.1, 0.1)]
    assert run_rule(stopper, losses) == 4
    assert (stopper.best_epoch, stopper.best_loss, stopper.stopped_by) == (2, 0.7, "diverged")
    first = EarlyStopping(patience=10, rule="paper")
    assert run_rule(first, [(float("nan"), 1.0)]) == 1 and first.best_epoch == 0


def test_fit_stops_a_diverging_run_and_restores_the_best_finite_epoch(tiny_data):
    state, net, snapshots = train_head_with_sgd(tiny_data, lr=1e6, max_epochs=30)
    assert state.stopper.stopped_by == "diverged" and state.epoch < 30
    last = state.history[-1]
    assert not (math.isfinite(last.train_loss) and math.isfinite(last.val_loss))
    best = state.stopper.best_epoch
    if best:  # the best finite epoch's weights, not the diverged ones
        restored = trainable_state(net)
        assert all(torch.equal(restored[k], snapshots[best][k]) for k in restored)


def test_balanced_sampler_draws_every_class_equally():
    """sample_weights: each epoch draws len(inputs) images with replacement in those proportions."""
    from trainable.loop import train_one_epoch

    labels = torch.tensor([0] * 90 + [1] * 10)
    inputs = torch.randn(100, 4)
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            seen.append(x)
            return self.linear(x)

    net = Spy()
    weights = torch.where(labels == 0, 1 / 90, 1 / 10).double()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    recipe = Recipe(optimizer, CPU, "fp32", batch_size=100, max_epochs=20, sample_weights=weights)
    for epoch in range(1, 21):
        train_one_epoch(net, nn.CrossEntropyLoss(), inputs, labels, recipe, epoch)
    drawn = torch.cat(seen)
    rows = (drawn[:, None, :] == inputs[None]).all(-1).float().argmax(1)
    minority = (labels[rows] == 1).float().mean().item()
    assert len(drawn) == 2000 and abs(minority - 0.5) < 0.05  # 2000 draws: sd 0.011, so 4.5 sd


def grid_batch_sizes() -> list[int]:
    """Every batch size a shipped grid or search space can give a trial."""
    from study.grids import GRIDS

    sizes = {settings.get("batch_size", 32) for g in GRIDS.values() for _, _, settings in g.experiments}
    for g in GRIDS.values():
        for key, r in (g.ranges or {}).items():
            sizes |= {int(label) for label, _ in r.values} if key == "batch_size" else set()
    return sorted(sizes)


@pytest.mark.parametrize("remainder", [0, 1, 2])
@pytest.mark.parametrize("batch_size", grid_batch_sizes())
def test_every_batch_trains_whatever_the_remainder(batch_size, remainder):
    """A last batch of one is merged into the one before: each image once, no batch of one,
    and block8 + head (BatchNorm2d and BatchNorm1d in training mode) train on every batch."""
    from trainable.loop import batches, train_one_epoch

    n = 2 * batch_size + remainder
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    chunks = batches(order, batch_size)
    assert sorted(torch.cat(chunks).tolist()) == list(range(n)) and min(map(len, chunks)) >= 2
    assert max(map(len, chunks)) == batch_size + (remainder == 1)
    net = build_model("none", "block8", seed=0)
    features, labels = torch.randn(n, 1792, 3, 3), torch.arange(n) % 3
    for sample_weights in (None, torch.ones(n, dtype=torch.float64)):  # random order, then the sampler
        optimizer = torch.optim.Adam(net.head.parameters())
        recipe = Recipe(optimizer, CPU, "fp32", batch_size, max_epochs=1, sample_weights=sample_weights)
        loss = train_one_epoch(net.head, nn.CrossEntropyLoss(), features, labels, recipe, epoch=1)
        assert math.isfinite(loss)
