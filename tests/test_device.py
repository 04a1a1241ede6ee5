import pytest
import torch

from trainable.device import autocast, cpu_has_bf16, grad_scaler, resolve_precision

CPU = torch.device("cpu")


def test_auto_precision_on_this_cpu():
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", CPU)


def test_bf16_autocast_changes_matmul_dtype_and_fp32_does_not():
    a = torch.randn(4, 4)
    with autocast(CPU, "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (a @ a).dtype == torch.float32
    assert not grad_scaler(CPU, "bf16").is_enabled()
