"""InceptionResnetV1 split into a trunk (frozen, cacheable) and a head (trained).

`freeze=block8` puts every module before `block8` in the trunk: it runs without
gradients and always in eval mode, so neither its weights nor its BatchNorm
statistics ever change. `freeze=none` leaves the trunk empty.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Any

import torch
from facenet_pytorch import InceptionResnetV1
from facenet_pytorch.models.inception_resnet_v1 import get_torch_home
from torch import nn
from torchvision.transforms import v2

from trainable.config import NAMED_WEIGHTS
from trainable.device import autocast
from trainable.errors import UserError
from trainable.transforms import CROP, FACENET_MEAN, FACENET_STD, SIZE, eval_transform

NUM_CLASSES = 3  # age groups 1-4, 5-27, 28+; other datasets may have other counts
# InceptionResnetV1's modules in forward order; `flatten` stands for its x.view(N, -1).
MODULE_ORDER = (
    "conv2d_1a",
    "conv2d_2a",
    "conv2d_2b",
    "maxpool_3a",
    "conv2d_3b",
    "conv2d_4a",
    "conv2d_4b",
    "repeat_1",
    "mixed_6a",
    "repeat_2",
    "mixed_7a",
    "repeat_3",
    "block8",
    "avgpool_1a",
    "dropout",
    "flatten",
    "last_linear",
    "last_bn",
    "logits",
)
RANDOM_TRUNK_SEED = 0  # weights=none: one fixed random init, so trials can share its cache
WEIGHT_URLS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}


class FaceAgeNet(nn.Module):
    """trunk (frozen modules, may be empty) -> head (trained modules, ends in the logits)."""

    def __init__(self, backbone: InceptionResnetV1, freeze: str) -> None:
        super().__init__()
        modules = [(name, nn.Flatten(1) if name == "flatten" else getattr(backbone, name)) for name in MODULE_ORDER]
        cut = 0 if freeze == "none" else MODULE_ORDER.index(freeze)
        self.trunk = nn.Sequential(OrderedDict(modules[:cut]))
        self.head = nn.Sequential(OrderedDict(modules[cut:]))
        self.frozen = cut > 0
        self.trunk_precision = "fp32"  # the frozen trunk's forward; the trained part runs at its caller's
        if self.frozen:
            self.trunk.requires_grad_(False)
            self.trunk.eval()

    def train(self, mode: bool = True) -> FaceAgeNet:
        super().train(mode)
        if self.frozen:
            self.trunk.eval()  # frozen means eval mode too: BatchNorm statistics stay put
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 160 x 160 images -> trunk output (N x 1792 x 3 x 3 for block8, in the input's
        dtype). A frozen trunk runs at `trunk_precision` whatever the autocast around it, as
        when its outputs are cached (trainable.cache.encode), so the trained part sees the same
        inputs."""
        if not self.frozen:
            return self.trunk(x)
        with torch.no_grad(), autocast(x.device, self.trunk_precision):
            return self.trunk(x).to(x.dtype)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk output -> N x num_classes logits."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def trained_model_record(model: FaceAgeNet, *, weights: str, freeze: str, **description: Any) -> dict:
    """What a final checkpoint keeps of a model: the starting weights' name, the trained
    part (the head alone when the trunk is frozen: ~10 MB instead of ~92 MB) and
    `description`: how to use it (trainable.trial.model_description)."""
    num_classes = model.head.logits.out_features
    return {
        "weights": weights,
        "freeze": freeze,
        "num_classes": num_classes,
        "trained": trainable_state(model),
        **description,
    }


def random_model_file(path: str, classes: tuple[str, ...] = ("1-4", "5-27", "28+")) -> str:
    """A model file of random weights (freeze block8), described as a trial describes its
    own: what serving tests and benchmarks load (it runs at the trained model's speed)."""
    preprocessing = {"normalization": "facenet", "mean": list(FACENET_MEAN), "std": list(FACENET_STD)}
    record = trained_model_record(
        build_model("none", "block8", seed=0, num_classes=len(classes)),
        weights="none",
        freeze="block8",
        classes=list(classes),
        preprocessing={**preprocessing, "crop": CROP, "size": SIZE},
        precision="fp32",
    )
    torch.save(record, path)
    return str(path)


def load_trained(path: str) -> tuple[FaceAgeNet, v2.Compose]:
    """A trained model from a checkpoint's model file, in eval mode, and the eval transform
    its inputs need (crop, resize, the normalization it was trained with)."""
    model, transform, _ = read_trained(path)
    return model, transform


MODEL_RECORD = ("weights", "num_classes", "freeze", "trained", "preprocessing")  # what a model.pt holds


def read_trained(path: str) -> tuple[FaceAgeNet, v2.Compose, dict]:
    """load_trained, and the file's record (classes, precision, config, ...), from one read. A file
    that is not such a record (text, a truncated file, another program's checkpoint) is one UserError."""
    whose = "a study's best/model.pt (python -m analysis.best RESULTS_DIR) is one"
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises what its unpickler or zip reader met: any is a bad file
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04":  # torch.save's zip format
            why = "an empty file" if not head else "not a PyTorch file"
        else:
            why = (
                f"a damaged or truncated PyTorch file: {(str(err).strip() or type(err).__name__).splitlines()[0][:120]}"
            )
        raise UserError(f"{path}: not a model file this tool can read ({why}); {whose}.") from None
    if not isinstance(record, dict):
        raise UserError(f"{path} holds a {type(record).__name__}, not a model record; {whose}.")
    if "preprocessing" not in record and all(k in record for k in MODEL_RECORD[:-1]):
        raise UserError(
            f"{path} was written before model files described their preprocessing; retrain it "
            "(python -m study.run --resume only rescores), or rebuild it with FaceAgeNet by hand."
        )
    if missing := [k for k in MODEL_RECORD if k not in record]:
        raise UserError(f"{path} is not a model record: it lacks {', '.join(missing)}; {whose}.")
    try:
        model = FaceAgeNet(load_backbone(record["weights"], record["num_classes"]), record["freeze"])
        load_trainable_state(model, record["trained"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        said = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: its trained weights do not fit the model it records ({said}).") from None
    pre = record["preprocessing"]
    return model.eval(), eval_transform(mean=pre["mean"], std=pre["std"]), record


def weights_cache_file(name: str) -> str:
    """Where facenet-pytorch keeps (and looks for) a downloaded weights file."""
    return os.path.join(get_torch_home(), "checkpoints", os.path.basename(WEIGHT_URLS[name]))


def resolve_weights(spec: str) -> str:
    """Check a --weights value before any work starts; return what trials should use.

    Named weights are downloaded now (once, by facenet-pytorch) so a failure is
    reported up front; a path becomes absolute and must hold a loadable state dict.
    """
    if spec in NAMED_WEIGHTS:
        if spec != "none":
            load_backbone(spec)
        return spec
    path = os.path.abspath(os.path.expanduser(spec))
    if not os.path.isfile(path):
        raise UserError(f"--weights {spec!r} is neither one of {list(NAMED_WEIGHTS)} nor an existing file.")
    load_backbone(path)
    return path


def weights_id(spec: str) -> str:
    """What the trunk's weights are, for cache keys: the name, or a file's sha256."""
    if spec == "none":
        return f"none:he-init:seed{RANDOM_TRUNK_SEED}"
    if spec in NAMED_WEIGHTS:
        return spec
    with open(spec, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def weights_label(spec: str) -> str:
    """How tables name a weights spec: 'vggface2', 'none (random init)', or a file's
    name and the start of its sha256 (two files of one name are then told apart)."""
    if spec == "none":
        return "none (random init)"
    if spec in NAMED_WEIGHTS:
        return spec
    return f"{os.path.basename(spec)} (sha256 {weights_id(spec).split(':')[1][:12]})"


def load_backbone(spec: str, num_classes: int = NUM_CLASSES) -> InceptionResnetV1:
    """InceptionResnetV1 with `num_classes` logits, weights from `spec` (see TrialConfig.weights).

    Never falls back to random weights: a failed download or a bad file raises UserError.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_TRUNK_SEED)
        if spec == "none":
            return random_backbone(num_classes)
        if spec in WEIGHT_URLS:
            try:
                return InceptionResnetV1(pretrained=spec, classify=True, num_classes=num_classes)
            except Exception as err:
                raise UserError(
                    f"Could not load the pretrained '{spec}' weights: facenet-pytorch fetches "
                    f"them from {WEIGHT_URLS[spec]} and caches them as "
                    f"{weights_cache_file(spec)}; that failed with {type(err).__name__}: {err}. "
                    f"Copy the file there by hand, or pass --weights PATH (a local "
                    f"InceptionResnetV1 state dict), or --weights none (random weights, for "
                    f"tests). Valid --weights values: {list(NAMED_WEIGHTS)} or a file path."
                ) from err
        backbone = InceptionResnetV1(classify=True, num_classes=num_classes)
    try:
        state = torch.load(spec, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"--weights file {spec} could not be read as a PyTorch state dict "
            f"(torch.load with weights_only=True): {err}"
        ) from err
    if not isinstance(state, dict):
        raise UserError(f"--weights file {spec} holds a {type(state).__name__}, not a state dict.")
    if state.get("logits.weight", backbone.logits.weight).shape != backbone.logits.weight.shape:
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # other classes
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise UserError(f"--weights file {spec} does not match InceptionResnetV1: {err}") from err
    missing = [k for k in missing if not k.startswith("logits.")]
    if missing or unexpected:
        raise UserError(
            f"--weights file {spec} does not match InceptionResnetV1: "
            f"{len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}."
        )
    return backbone


def random_backbone(num_classes: int = NUM_CLASSES) -> InceptionResnetV1:
    """Random weights that keep activations at unit scale through the whole network.

    PyTorch's default init shrinks activations ~100x over InceptionResnetV1's
    depth (trunk output std ~0.01 on real faces); with BatchNorm in eval mode
    nothing rescales them and the classes become unlearnable. He init keeps
    the trunk output std near 1.
    """
    backbone = InceptionResnetV1(classify=True, num_classes=num_classes)
    for module in backbone.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return backbone


def build_model(
    weights: str, freeze: str, seed: int, num_classes: int = NUM_CLASSES, dropout: float = 0.6
) -> FaceAgeNet:
    """The network for one trial; `seed` initialises the new logits layer, `dropout` is the
    drop probability before the last linear layer (always in the head)."""
    model = FaceAgeNet(load_backbone(weights, num_classes), freeze)
    model.head.dropout.p = dropout
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.head.logits.reset_parameters()
    return model


def trainable_state(model: FaceAgeNet) -> dict[str, torch.Tensor]:
    """A real copy of the weights training can change (the head alone when frozen)."""
    part = model.head if model.frozen else model
    return {k: v.detach().clone() for k, v in part.state_dict().items()}


def load_trainable_state(model: FaceAgeNet, state: dict[str, torch.Tensor]) -> None:
    (model.head if model.frozen else model).load_state_dict(state)
