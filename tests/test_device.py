import platform
import threading

import pytest
import torch

from trainable.device import autocast, cpu_has_bf16, grad_scaler, release_memory, resolve_precision

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


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_memory_returns_a_finished_threads_freed_blocks():
    # As a Ray trial does: many small tensors (below glibc's mmap threshold) in a thread.
    def trial():
        blocks = [torch.ones(16 * 1024) for _ in range(4000)]  # 64 KiB each, 250 MiB
        del blocks

    thread = threading.Thread(target=trial)
    thread.start()
    thread.join()
    kept = _rss_mib()
    release_memory()
    assert kept - _rss_mib() > 150, "freed blocks stayed with the process"


def test_cpu_info_names_the_model_flags_and_kernel_level(monkeypatch):
    from trainable.device import cpu_info, describe_cpu

    info = cpu_info()
    assert info["model"] and set(info["flags"]) <= {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert info["torch_kernels"] == torch.backends.cpu.get_cpu_capability()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in describe_cpu() and info["model"] in describe_cpu()
