import pytest
import torch

from trainable import model as model_mod
from trainable.errors import UserError
from trainable.model import (
    build_model,
    load_backbone,
    load_trained,
    random_backbone,
    resolve_weights,
    trained_model_record,
)

pytestmark = pytest.mark.numerics  # rerun with older CPU kernels in .ci/run


@pytest.fixture(scope="module")
def frozen():
    return build_model("none", "block8", seed=0)


def test_shapes_and_no_nan(frozen):
    x = torch.randn(2, 3, 160, 160)
    frozen.eval()
    with torch.no_grad():
        features = frozen.forward_features(x)
        logits = frozen(x)
    assert features.shape == (2, 1792, 3, 3)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert 0.1 < features.std() < 10  # He init keeps the scale (see random_backbone)


def test_split_points():
    net = build_model("none", "repeat_3", seed=0)
    assert list(net.head)[:2] == [net.head.repeat_3, net.head.block8]
    assert "mixed_7a" in dict(net.trunk.named_children())
    whole = build_model("none", "none", seed=0)
    assert len(whole.trunk) == 0 and not whole.frozen


def test_seed_initialises_only_the_logits():
    a, b = build_model("none", "block8", 0), build_model("none", "block8", 1)
    assert not torch.equal(a.head.logits.weight, b.head.logits.weight)
    assert torch.equal(a.head.block8.conv2d.weight, b.head.block8.conv2d.weight)
    assert torch.equal(a.trunk.conv2d_1a.conv.weight, b.trunk.conv2d_1a.conv.weight)


def train_step(net):
    net.train()
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 160, 160)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()


def test_frozen_trunk_is_bit_identical_after_training():
    net = build_model("none", "block8", seed=0)
    before = {k: v.clone() for k, v in net.trunk.state_dict().items()}
    head_before = {k: v.clone() for k, v in net.head.state_dict().items()}
    train_step(net)
    assert not net.trunk.training  # eval mode even after net.train()
    after = net.trunk.state_dict()
    assert any("running_mean" in k for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN buffers
    assert all(p.grad is None for p in net.trunk.parameters())
    assert all(p.grad is not None for p in net.head.parameters())
    changed = [k for k, v in net.head.state_dict().items() if not torch.equal(v, head_before[k])]
    assert any(k.startswith("block8.") for k in changed) and "logits.weight" in changed


def test_no_freezing_trains_everything():
    net = build_model("none", "none", seed=0)
    before = net.head.conv2d_1a.bn.running_mean.clone()
    train_step(net)
    assert len(net.trunk) == 0 and net.head.training and net.head.conv2d_1a.bn.training
    assert all(p.grad is not None for p in net.parameters())
    assert not torch.equal(net.head.conv2d_1a.bn.running_mean, before)  # the first BatchNorm learns too


def test_local_weights_file_round_trip(tmp_path):
    backbone = random_backbone()
    path = tmp_path / "w.pt"
    torch.save(backbone.state_dict(), path)
    assert resolve_weights(str(path)) == str(path)
    loaded = load_backbone(str(path))
    assert torch.equal(loaded.block8.conv2d.weight, backbone.block8.conv2d.weight)


def test_local_weights_with_other_class_count_load_without_logits(tmp_path):
    state = random_backbone().state_dict()
    state["logits.weight"] = torch.zeros(8631, 512)
    state["logits.bias"] = torch.zeros(8631)
    torch.save(state, tmp_path / "vgg.pt")
    assert load_backbone(str(tmp_path / "vgg.pt")).logits.weight.shape == (3, 512)


def test_bad_weights_are_refused(tmp_path):
    with pytest.raises(UserError, match="neither one of"):
        resolve_weights(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(UserError, match="weights_only"):
        resolve_weights(str(tmp_path / "junk.pt"))
    torch.save({"conv2d_1a.conv.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "partial.pt")
    with pytest.raises(UserError, match="missing key"):
        resolve_weights(str(tmp_path / "partial.pt"))
    torch.save({"conv2d_1a.conv.weight": torch.zeros(1)}, tmp_path / "shape.pt")
    with pytest.raises(UserError, match="size mismatch"):
        resolve_weights(str(tmp_path / "shape.pt"))


def test_failed_download_is_a_clear_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr("facenet_pytorch.models.inception_resnet_v1.download_url_to_file", offline)
    with pytest.raises(UserError) as err:
        resolve_weights("vggface2")
    message = str(err.value)
    assert "Network is unreachable" in message
    assert str(tmp_path / "checkpoints" / "20180402-114759-vggface2.pt") in message
    assert "--weights none" in message and "casia-webface" in message
    assert model_mod.weights_cache_file("vggface2").startswith(str(tmp_path))


def test_trained_model_round_trip(tmp_path):
    net = build_model("none", "block8", seed=3)
    train_step(net)
    preprocessing = {"mean": [0.5] * 3, "std": [0.5] * 3}
    torch.save(
        trained_model_record(net, weights="none", freeze="block8", preprocessing=preprocessing), tmp_path / "m.pt"
    )
    loaded, transform = load_trained(str(tmp_path / "m.pt"))
    assert transform.transforms[1].mean == [0.5] * 3
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))  # same kernels, same weights: exact
