import json
import os
import subprocess
import sys

import pytest

from study.bench.main import main
from study.bench.measure import tree_pss
from tests.conftest import REAL_DATA, ROOT


def test_tree_pss_counts_child_processes():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
            "print(1, flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child.stdout.readline()  # the child has touched its 200 MiB
        pss = tree_pss(os.getpid())
        by_pid = {int(key.split()[0]): size for key, size in pss.items()}
        assert os.getpid() in by_pid
        assert by_pid[child.pid] > 190 * 2**20
    finally:
        child.stdin.close()
        child.wait()


@pytest.mark.long
@pytest.mark.slow
def test_quick_benchmark_measures_the_cache_against_the_naive_way(tmp_path, capsys):
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    out = tmp_path / "bench.json"
    assert main(["--quick", "--data", REAL_DATA, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    cpu = results["machine"]["cpu"]
    assert cpu["model"] in capsys.readouterr().out and cpu["torch_kernels"] in ("DEFAULT", "AVX2", "AVX512")
    epochs = results["frozen_epoch_s"]
    assert all(seconds > 0 for seconds in epochs.values())
    assert results["cached_speedup_vs_original"] > 5  # ~30x on 2 cores; loose for busy machines
    assert 0 < results["head_training"]["batch 32"]["fraction_of_fp32_peak"] < 1.5
    assert len(results["head_batch8_img_per_s"]) == 3 and all(r > 0 for r in results["head_batch8_img_per_s"].values())
    assert results["ray"]["per_epoch_share_of_a_cached_epoch"] < 0.5
    assert "paper_grid" not in results


@pytest.mark.long
@pytest.mark.slow
def test_scale_benchmark_runs_the_cli_on_generated_datasets(tmp_path, capsys):
    """study.bench --scale at two tiny sizes: every figure measured, the table printed."""
    assert main(["--scale", "--sizes", "150,300", "--keep", str(tmp_path), "--out", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "| images | scan s | decode s | encoding img/s |" in out
    rows = json.loads((tmp_path / "s.json").read_text())["scale"]
    assert [r["images"] for r in rows] == [150, 300] and rows[1]["split"] == {"train": 180, "val": 60, "test": 60}
    for row in rows:
        assert row["decode_s"] > 0 and row["encoding_img_per_s"] > 0 and row["cached_epoch_s"] > 0
        assert 0 < row["driver_peak_pss_gb"] < row["all_processes_peak_pss_gb"]


@pytest.mark.long
@pytest.mark.slow
def test_the_gpu_check_runs_without_ray_on_the_cpu(tiny_root, tmp_path):
    """`--no-ray --quick` on CPU: the kernel figures with their fractions of the matmul peak,
    then the paper grid through the Ray-free trial function in a worker process, with Ray made
    unimportable (the H200 machine has none); DIR holds bench.json and table.md."""
    blocker = tmp_path / "no-ray" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('Ray is not installed on the GPU machine')\n")
    out = tmp_path / "gpu-check"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), ROOT])}
    argv = ["--device", "cpu", "--no-ray", "--quick", "--data", tiny_root, "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "study.bench", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "bench.json").read_text())
    assert 0 < results["trunk_encoding_fraction_of_peak"]["fp32"] < 1.5  # FLOPs counted, rates measured
    assert all(0 < f < 1.5 for f in results["full_finetune_fraction_of_peak"].values())
    grid = results["paper_grid_without_ray"]
    assert grid["trials"] == 7 and grid["seeds"] == 1 and grid["concurrent"] == 1
    rows = grid["per_trial"]
    assert rows[0]["freeze"] == "none"  # full-network trials first
    assert all(r["epochs"] == 1 and r["precision"].endswith("trained fp32") for r in rows)
    assert "| trial | epochs |" in (out / "table.md").read_text() and "paper grid x 1 seed(s)" in proc.stdout


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.extra("serve")
def test_serve_benchmark_answers_every_request_in_every_cell(tmp_path, capsys):
    """study.bench --serve, bounded to 8 requests a cell: both modes x 1, 8, 32 clients, every
    request answered with 200, the table printed."""
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real dataset not found at {REAL_DATA}")
    assert main(["--serve", "--requests", "8", "--data", REAL_DATA, "--out", str(tmp_path / "s.json")]) == 0
    assert "| mode | concurrency | sent | answered_200 | errors | rps | p50_ms |" in capsys.readouterr().out
    rows = json.loads((tmp_path / "s.json").read_text())["serve"]
    assert [(r["mode"], r["concurrency"]) for r in rows] == [
        (mode, c) for mode in ("no batching", "batching (8)") for c in (1, 8, 32)
    ]
    assert all(r["sent"] == r["answered_200"] == 8 and r["errors"] == 0 and r["rps"] > 0 for r in rows)
