"""Resource amounts as Kubernetes and JupyterHub read them, to compare limits with requests.

Kubernetes quantities: `500m` CPU is 0.5, `1G` is 10^9 bytes and `1Gi` 2^30,
`1e3` is 1000. JupyterHub reads singleuser memory (KubeSpawner's mem_limit and
mem_guarantee) by its own rule: a number of bytes, or a number with K, M, G or
T in powers of 1024, so `1G` there is 2^30 and `1Gi` is refused.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

_KUBERNETES = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_JUPYTERHUB_BYTES = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _number(value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not finite(value):
        return None
    return Fraction(value)


def finite(value: Any) -> bool:
    """False for a YAML .nan or .inf (or 1e400, too large for a float): no amount at all."""
    return not isinstance(value, float) or math.isfinite(value)


def kubernetes(value: Any) -> Fraction | None:
    """A Kubernetes quantity (`500m`, `2`, `1.5Gi`, `1e3`, a YAML number), or None if not one."""
    if not isinstance(value, str):
        return _number(value)
    match = _KUBERNETES.match(value)
    if match is None:
        return None
    amount = Fraction(match["number"])
    if match["binary"]:
        return amount * (1 << _BINARY[match["binary"]])
    exponent = _DECIMAL[match["decimal"]] if match["decimal"] else int(match["exponent"] or 0)
    return amount * Fraction(10) ** exponent


def jupyterhub_bytes(value: Any) -> Fraction | None:
    """Bytes as JupyterHub's ByteSpecification reads them, or None if it would refuse them."""
    if not isinstance(value, str):
        return _number(value)
    suffix = value[-1:]
    if suffix not in _JUPYTERHUB_BYTES:
        return None
    try:
        amount = Fraction(float(value[:-1]))
    except (ValueError, OverflowError):
        return None
    return amount * _JUPYTERHUB_BYTES[suffix]
