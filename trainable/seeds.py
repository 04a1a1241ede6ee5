"""Independent seeds derived from a trial's seed and a purpose."""

from __future__ import annotations

import hashlib

MAX_SEED = 2**32  # seeds run below it: numpy's RandomState (Optuna's samplers) takes 32 bits


def derive_seed(seed: int, *purpose: object) -> int:
    """An independent 63-bit seed for (seed, purpose...), e.g. (3, 'online', 17)."""
    text = ":".join(str(p) for p in (seed, *purpose))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
