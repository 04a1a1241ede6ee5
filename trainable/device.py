"""Where a trial computes (CPU or the GPU Ray assigned it), at what precision, and
giving its memory back when done."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from functools import cache

import torch


def pick_device() -> torch.device:
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPUs (empty when it has none).
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # the ones torch's kernels use
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")  # force older kernels on a newer CPU


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def cpu_info() -> dict[str, object]:
    """What every measurement must say it ran on: the CPU model, its relevant flags, and
    the kernel level torch dispatched to (lower than the flags allow when the KERNEL_ENV
    variables cap it)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "model": info.get("model name", "unknown"),
        "flags": [f for f in CPU_FLAGS if f in flags],
        "torch_kernels": torch.backends.cpu.get_cpu_capability(),
        **{name: os.environ[name] for name in KERNEL_ENV if name in os.environ},
    }


def describe_cpu() -> str:
    """One line, e.g. 'AMD EPYC (avx2 avx512f avx512_bf16); torch kernels AVX512'."""
    info = cpu_info()
    caps = "".join(f", {name}={info[name]}" for name in KERNEL_ENV if name in info)
    return f"{info['model']} ({' '.join(info['flags']) or 'no AVX2'}); torch kernels {info['torch_kernels']}{caps}"


def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 autocast runs InceptionResnetV1 ~2x faster than fp32 there."""
    return bool({"amx_bf16", "avx512_bf16"} & set(_cpuinfo().get("flags", "").split()))


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the hardware runs it natively, fp16 on older GPUs, else 'fp32'."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA GPU (use bf16 or fp32 on CPUs)")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for forward passes: weights and optimizer state stay fp32. fp32 turns
    autocast off, also inside an outer region of another precision (FaceAgeNet's trunk)."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (disabled scaler)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def release_memory() -> None:
    """Give freed memory back to the OS (and CUDA's cache back to the GPU). glibc keeps freed
    blocks in per-thread arenas, and Ray runs each trial in a new thread of a reused worker:
    without this a worker keeps its largest trial's peak for good (BENCHMARKS.md)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
