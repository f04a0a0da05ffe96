"""A/B variant assignment: which variant of a step a lead gets (pure, deterministic).

The choice hashes (sequence id, step id, lead id), so it is stable across
restarts, re-runs and workers, needs no stored state to be reproduced, and is
independent between steps (a lead's variant on `intro` says nothing about its
variant on `bump`). Weights are honoured exactly in expectation: the hash is read
as a uniform number in [0, total weight) and the variants cut that range in
proportion to their weights, in file order.
"""

from __future__ import annotations

import hashlib

from cadence.spec.model import Step


def assign(sequence_id: str, step: Step, lead_id: str) -> str | None:
    """The id of the variant `lead_id` gets on `step`, or None for a step without variants."""
    if not step.variants:
        return None
    total = sum(v.weight for v in step.variants)
    digest = hashlib.blake2b(f"{sequence_id}\x1f{step.id}\x1f{lead_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") * total >> 64  # uniform in [0, total)
    for variant in step.variants:
        if point < variant.weight:
            return variant.id
        point -= variant.weight
    raise AssertionError("unreachable: weights cover the whole range")  # pragma: no cover
