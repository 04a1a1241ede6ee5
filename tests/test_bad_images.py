"""Every kind of bad input is found in one scan, before any training."""

import io

import numpy as np
import pytest
from PIL import Image

from study.run import main
from study.smoke_data import RANGES
from tests.conftest import BAD_CASES, CONVERTED_CASES, SMOKE_SPLIT
from trainable.data.dataset import load_dataset
from trainable.errors import UserError


def test_one_error_lists_every_broken_file(bad_root):
    with pytest.raises(UserError) as err:
        load_dataset(bad_root, layout="el7008", ranges=RANGES)
    message = str(err.value)
    assert f"{len(BAD_CASES)} problem(s)" in message and "--on-bad-image skip" in message
    lines = message.splitlines()
    for path, reason in BAD_CASES.items():
        assert any(path in line and reason in line for line in lines), (path, reason)


def test_skip_leaves_them_out_and_converts_the_rest(bad_root):
    data = load_dataset(bad_root, layout="el7008", ranges=RANGES, on_bad_image="skip")
    assert len(data.skipped) == len(BAD_CASES)
    assert len(data.paths) == 48 - 8  # eight planted files are broken; the stray folder holds none
    for path, note in CONVERTED_CASES.items():
        assert any(path in c and note in c for c in data.converted), (path, note)
        image = data.images[data.paths.index(path)]
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"
    assert max(data.images[data.paths.index("5/1.jpg")].shape) == 1024
    sixteen = data.images[data.paths.index("1/5.jpg")]
    assert 20 < sixteen.mean() < 235  # scaled to 8 bits, not clipped to white


def test_cli_error_exits_non_zero_naming_each_file(bad_root, capsys, tmp_path):
    storage = tmp_path / "results"
    code = main(
        [
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--data",
            bad_root,
            "--layout",
            "el7008",
            "--storage",
            str(storage),
            *SMOKE_SPLIT,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    for path in BAD_CASES:
        assert path in err
    assert not storage.exists()  # nothing was started or written


def test_weights_files_are_loaded_without_unpickling_code(tmp_path):
    import pickle

    ran = tmp_path / "this-ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(ran), "w"))  # unpickling would create the file

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"conv2d_1a.conv.weight": Evil()}, f)
    from trainable.model import resolve_weights

    with pytest.raises(UserError, match="weights_only"):
        resolve_weights(str(tmp_path / "evil.pt"))
    assert not ran.exists()  # weights_only=True refused the pickled callable
    with open(tmp_path / "evil.pt", "rb") as f:
        pickle.load(f)  # the file does what the test says when unpickled the unsafe way
    assert ran.exists()


def test_fifty_broken_files_print_twenty_grouped_lines_and_name_the_full_list(capsys, tmp_path):
    import re

    import numpy as np
    from PIL import Image

    from study.run import main

    rng = np.random.default_rng(0)
    for label in ("adult", "child"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(tmp_path / label / f"ok{i}.png")
        for i in range(25):
            (tmp_path / label / f"broken{i}.jpg").write_text(f"not an image {label} {i}")
    code = main(
        [
            "--grid",
            "smoke",
            "--confirm-top",
            "0",
            "--data",
            str(tmp_path),
            "--layout",
            "folders",
            "--storage",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    file_lines = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(file_lines) == 20 and all(
        re.match(r"  /\S+broken\d+\.jpg: cannot be decoded", line) for line in file_lines
    )
    assert "cannot be decoded (50):" in err and "30 more; all 50 are listed in" in err
    full = re.search(r"The whole list: (\S+\.txt)", " ".join(err.split()))[1]
    assert len(open(full).read().splitlines()) == 50


def test_problems_are_grouped_by_their_kind_not_their_wording(tmp_path):
    import pickle

    from trainable.data.problems import Kind, Problem, grouped

    reworded = [Problem(Kind.EMPTY, f"/d/{i}.jpg", f"holds no bytes at all ({i})") for i in range(3)]
    mixed = [*reworded, Problem(Kind.MISSING, "/d/x.jpg", "an empty file was expected here")]
    text = grouped(mixed, str(tmp_path / "list.txt"))
    assert text.splitlines()[0] == "empty file (3):" and "missing (1):" in text  # "empty" in a reason moves nothing
    again = pickle.loads(pickle.dumps(mixed[-1]))  # as Ray sends FaceData to trials
    assert (again, again.kind, again.path) == ("/d/x.jpg: an empty file was expected here", Kind.MISSING, "/d/x.jpg")


@pytest.fixture
def limits_from(monkeypatch):
    """Set FACE_AGE_MAX_* for one test (image_limits reads them once per process)."""
    from trainable.data.limits import image_limits

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        image_limits.cache_clear()

    yield set_env
    monkeypatch.undo()
    image_limits.cache_clear()


def test_the_image_limits_are_raised_and_lowered_by_the_environment(limits_from):
    import io

    from PIL import Image

    from trainable.data.scan import Unusable, decode_image

    png = io.BytesIO()
    Image.new("RGB", (300, 20)).save(png, format="PNG")  # 15:1
    assert decode_image(png.getvalue())[0].shape == (20, 300, 3)
    limits_from(FACE_AGE_MAX_ASPECT="10")
    with pytest.raises(Unusable, match=r"300x20 px in its header: sides over 10:1 \(FACE_AGE_MAX_ASPECT\)"):
        decode_image(png.getvalue())
    limits_from(FACE_AGE_MAX_ASPECT="20", FACE_AGE_MAX_PIXELS="5_000")
    with pytest.raises(Unusable, match=r"too large \(300x20 px in its header; at most 5,000 pixels"):
        decode_image(png.getvalue())
    limits_from(FACE_AGE_MAX_PIXELS="5_000_000", FACE_AGE_MAX_DECODED_BYTES="20_000")  # RGB: 4 bytes a pixel in PIL
    with pytest.raises(
        Unusable, match=r"300x20 px of RGB: 24,000 bytes to decode; at most 20,000 bytes are read: FACE"
    ):
        decode_image(png.getvalue())


DECODE_PEAK = """
import io, sys, threading, time
import numpy as np
from PIL import Image
from trainable.data.scan import decode_image, decoded_bytes
side, kind = int(sys.argv[1]), sys.argv[2]
ramp = np.add.outer(np.arange(side, dtype=np.uint32), np.arange(side, dtype=np.uint32))
if kind == "I;16":
    image = Image.fromarray((ramp % 65536).astype(np.uint16))
else:  # float in 0-1
    image = Image.fromarray((ramp / (2 * side)).astype(np.float32), mode="F")
buffer = io.BytesIO()
image.save(buffer, format="PNG" if kind == "I;16" else "TIFF")
data, mode = buffer.getvalue(), image.mode
del ramp, image
rss = lambda: int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
before, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
sampler = threading.Thread(target=sample)
sampler.start()
decode_image(data)
done.set()
sampler.join()
print(peak[0] - before, decoded_bytes(mode, side * side, False, False))
"""


@pytest.mark.parametrize("kind", ["I;16", "F"])
def test_a_wide_image_decodes_within_its_counted_bytes(kind):
    """A 6,300 x 6,300 16-bit PNG (375 KB) or float TIFF: the decode's peak memory (sampled every
    2 ms, in a fresh process) stays within what decoded_bytes counts for it plus 64 MiB (the 8-bit
    band, the downscaled copies, the decoder's buffers): 140 and 218 MiB measured, where the whole
    float64 copies before took 1,287 and 1,359 MiB."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    run = subprocess.run(
        [sys.executable, "-c", DECODE_PEAK, "6300", kind], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    grew, counted = map(int, run.stdout.split())
    print(f"{kind} 6300x6300: peak grew {grew / 2**20:.0f} MiB, counted {counted / 2**20:.0f} MiB")
    assert grew < counted + 64 * 2**20 and grew < 300 * 2**20, (grew, counted)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused_naming_it(limits_from, value, capsys, tmp_path):
    from study.predict import main as predict

    limits_from(FACE_AGE_MAX_PIXELS=value)
    assert predict(["--model", str(tmp_path), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"FACE_AGE_MAX_PIXELS='{value}': expected a positive whole number (the default is 40,000,000)" in err


def broken_tiff() -> bytes:
    """An 8x8 TIFF with three bytes changed, on which PIL's TIFF plugin raises a TypeError
    (found by mutating bytes at random)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    for offset, value in ((72, 2), (199, 21), (287, 106)):
        data[offset] = value
    return bytes(data)


def test_what_pil_raises_on_a_broken_file_is_the_files_fault_and_a_bug_of_ours_is_not(monkeypatch):
    """Any exception raised inside PIL while it reads the bytes (a TypeError from its TIFF plugin,
    a truncated PPM's OSError) is 'cannot be decoded'; one raised by our own code propagates."""
    from trainable.data import scan
    from trainable.data.problems import Kind

    for data in (broken_tiff(), b"P6 40 40 255\n" + bytes(10)):
        with pytest.raises(scan.Unusable, match="cannot be decoded as an image") as raised:
            scan.decode_image(data)
        assert raised.value.kind is Kind.UNDECODABLE
    monkeypatch.setattr(scan, "as_rgb", lambda *_: {}["a bug of ours"])
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    with pytest.raises(KeyError):
        scan.decode_image(buffer.getvalue())
