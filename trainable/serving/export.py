"""One self-contained file per trained model, trunk and preprocessing included: it takes
a batch of 160x160 RGB uint8 face crops (N x 160 x 160 x 3) and returns the class
probabilities (N x classes), in fp32.

    .onnx  ONNX (opset 18; the `export` extra brings onnx, onnxscript and onnxruntime)
    .pt2   torch.export (torch.export.load(path).module()(images))
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from trainable.errors import UserError
from trainable.model import FaceAgeNet, read_trained
from trainable.results.atomic_io import write_with
from trainable.transforms import SIZE

FORMATS = (".onnx", ".pt2")


class WithPreprocessing(nn.Module):
    """uint8 N x H x W x 3 images -> the model's own eval transform (crop, normalize,
    resize) -> the model -> softmax."""

    def __init__(self, model: FaceAgeNet, transform: nn.Module) -> None:
        super().__init__()
        self.model, self.transform = model.eval(), transform

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.transform(images.permute(0, 3, 1, 2).float() / 255.0)
        logits = self.model.head(self.model.trunk(x))  # no set_grad_enabled: torch.export cannot reload it
        return torch.softmax(logits, dim=1)


def exportable(model_file: str) -> WithPreprocessing:
    model, transform, _ = read_trained(model_file)
    return WithPreprocessing(model, transform).eval()


def export(model_file: str, out: str) -> str:
    """Write `out` (.onnx or .pt2) from a model.pt; return what was written."""
    suffix = next((s for s in FORMATS if out.endswith(s)), None)
    if suffix is None:
        raise UserError(f"--export {out}: expected a file name ending in one of {list(FORMATS)}.")
    if suffix == ".onnx" and importlib.util.find_spec("onnxscript") is None:  # torch.onnx's exporter needs it
        raise UserError("--export .onnx needs the export extra: pip install -e '.[export]'")
    module = exportable(model_file)
    example = torch.zeros(2, SIZE, SIZE, 3, dtype=torch.uint8)
    batch = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}}
    if suffix == ".pt2":
        program = torch.export.export(module, (example,), dynamic_shapes=batch)
        write_with(out, lambda tmp: torch.export.save(program, tmp))
        return f"{out}: torch.export program, N x {SIZE} x {SIZE} x 3 uint8 -> N x classes probabilities"
    options = {"input_names": ["images"], "output_names": ["probabilities"], "dynamic_shapes": batch}
    options.update(opset_version=18, dynamo=True, external_data=False)  # one file: the weights inside the .onnx
    write_with(out, lambda tmp: torch.onnx.export(module, (example,), tmp, **options))
    return f"{out}: ONNX, input 'images' N x {SIZE} x {SIZE} x 3 uint8, output 'probabilities' N x classes"
