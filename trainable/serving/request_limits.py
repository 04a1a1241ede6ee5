"""What the server grants one request and one client (study.http_app): how long a body may take
to arrive, and how many slow uploads of one client a replica holds at once. Each can be raised (or lowered)
by an environment variable, read once and checked as a positive whole number (study.serve checks
them before Ray starts; on a cluster of its own, set them on every node)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from trainable.data.limits import positive_ints

DEFAULTS = {
    # A body must arrive within this many seconds plus one for each MIN_BODY_RATE bytes it declares
    # (a 64 MiB image: 10 + 256 s), else 408: a client that sends a byte a second holds no slot long.
    "FACE_AGE_BODY_SECONDS": 10,
    "FACE_AGE_MIN_BODY_RATE": 256 * 1024,  # bytes a second
    "FACE_AGE_UPLOADS_PER_CLIENT": 8,  # slow uploads (still arriving after 1 s) of one client address at once
}


@dataclass(frozen=True)
class ServingLimits:
    body_seconds: int
    min_body_rate: int
    uploads_per_client: int

    def body_deadline(self, declared: int) -> float:
        """The seconds a body of `declared` bytes may take to arrive."""
        return self.body_seconds + declared / self.min_body_rate


@functools.cache
def serving_limits() -> ServingLimits:
    return ServingLimits(*positive_ints(DEFAULTS))
