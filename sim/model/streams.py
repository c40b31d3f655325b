"""Named random streams derived from one root seed.

Each component draws from its own stream, seeded by a SHA-256 of the root seed and the
stream's name (never Python's salted `hash()`), so adding a plant or a fault source does not
shift the numbers any other component sees: common random numbers across variants.
"""

from __future__ import annotations

import hashlib
import math
import random

from sim.scenario.document import Distribution

__all__ = ["Streams", "sample_seconds"]


class Streams:
    """`streams["plant:LYON:demand"]` is the same `random.Random` for the whole run."""

    def __init__(self, root_seed: int) -> None:
        self.root_seed = root_seed
        self._streams: dict[str, random.Random] = {}

    def __getitem__(self, name: str) -> random.Random:
        stream = self._streams.get(name)
        if stream is None:
            digest = hashlib.sha256(f"{self.root_seed}/{name}".encode()).digest()
            stream = self._streams[name] = random.Random(int.from_bytes(digest[:8], "big"))
        return stream


def sample_seconds(rng: random.Random, dist: Distribution) -> float:
    """One draw of a duration distribution, in seconds (never negative)."""
    mean = dist.mean.total_seconds()
    match dist.kind:
        case "constant":
            return mean
        case "exponential":
            return rng.expovariate(1 / mean) if mean > 0 else 0.0
        case "uniform":
            return rng.uniform(dist.low.total_seconds(), dist.high.total_seconds())
        case "lognormal":
            sd = dist.sd.total_seconds()
            if mean <= 0:
                return 0.0
            sigma2 = math.log(1 + (sd / mean) ** 2)
            return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
    raise AssertionError(dist.kind)
