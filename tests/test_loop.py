import pytest
import torch

from trainable.cache import encode
from trainable.loop import EarlyStopping, TrainState, derive_seed, fit
from trainable.model import build_model, trainable_state
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
    assert derive_seed(1, "order", 2) == derive_seed(1, "order", 2)
    assert len({derive_seed(1, "order", 2), derive_seed(1, "order", 3), derive_seed(2, "order", 2)}) == 3


def test_fit_restores_a_copy_of_the_best_epoch(tiny_data):
    net = build_model("none", "block8", seed=0)
    images = apply_transform(eval_transform(mean=tiny_data.mean, std=tiny_data.std), tiny_data.images)
    features = encode(net.trunk, images, device=CPU, precision="fp32")
    train, val = tiny_data.split["train"], tiny_data.split["val"]
    snapshots = {}
    optimizer = torch.optim.SGD(net.head.parameters(), lr=0.5)  # too high: val loss wanders
    state = fit(
        net, net.head, optimizer, TrainState(EarlyStopping(patience=100)),
        train_inputs=lambda epoch: features[train], train_labels=tiny_data.labels_of("train"),
        val_inputs=features[val], val_labels=tiny_data.labels_of("val"),
        batch_size=8, max_epochs=8, seed=0, device=CPU, precision="fp32",
        on_epoch=lambda state, done: snapshots.__setitem__(state.epoch, trainable_state(net)),
    )  # fmt: skip
    best = state.stopper.best_epoch
    assert best < 8, "the scenario needs a best epoch before the last"
    losses = [h.val_loss for h in state.history]
    assert losses[best - 1] == min(losses)
    restored = trainable_state(net)
    assert all(torch.equal(restored[k], snapshots[best][k]) for k in restored)
    assert not all(torch.equal(restored[k], snapshots[8][k]) for k in restored)
