"""Kubernetes resource quantities ("500m", "1.5", "512Mi", "2e3"), parsed exactly.

The grammar is apimachinery's `ParseQuantity`: a signed decimal number (`1`, `1.5`, `.5`, `5.`), then
nothing, a binary suffix (`Ki` .. `Ei`), a decimal suffix (`n u m k M G T P E`) or a decimal exponent
(`e3`, `E-2`). Kubernetes stores quantities as int64 with nano precision, so an exponent outside a small
window can never name a storable value: it is refused before any arithmetic, and `1e999999999` costs
nothing instead of a billion-digit number.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Final

_QUANTITY: Final = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?"
)
_BINARY_POWER: Final = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_EXPONENT: Final = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_MAX_EXPONENT: Final = 30
_MAX_CHARS: Final = 64
MAX_QUANTITY: Final = 2**63 - 1


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a Kubernetes quantity; `ValueError` quoting *text* if it is not one.

    Numbers are accepted as YAML gives them (`cpu: 2` is the quantity "2").
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        if isinstance(text, float) and not math.isfinite(text):
            raise ValueError(f"invalid quantity {text!r}")
        value = Fraction(text)
    else:
        match = _QUANTITY.fullmatch(text) if isinstance(text, str) and len(text) <= _MAX_CHARS else None
        if match is None:
            raise ValueError(f"invalid quantity {text!r} (expected e.g. '500m', '1.5', '512Mi', '2Gi')")
        exponent_text = match["exponent"]
        if exponent_text is not None and abs(int(exponent_text)) > _MAX_EXPONENT:
            raise ValueError(f"quantity {text!r} is out of range")
        number = Fraction(str(match["number"]))
        if match["binary"] is not None:
            value = number * 1024 ** _BINARY_POWER[match["binary"]]
        elif match["decimal"] is not None:
            value = number * Fraction(10) ** _DECIMAL_EXPONENT[match["decimal"]]
        elif exponent_text is not None:
            value = number * Fraction(10) ** int(exponent_text)
        else:
            value = number
    if abs(value) > MAX_QUANTITY:
        raise ValueError(f"quantity {text!r} is out of range (Kubernetes caps quantities at 2^63-1)")
    return value


def positive_quantity(text: str) -> Fraction:
    """Like `parse_quantity`, but zero and negative values are refused (a CPU or memory limit of a job)."""
    value = parse_quantity(text)
    if value <= 0:
        raise ValueError(f"quantity {text!r} must be greater than zero")
    return value


def divide_up(value: Fraction, divisor: Fraction) -> int:
    """`value / divisor` rounded up, as the downward API reports resources ("250m" with divisor 1 → 1)."""
    if divisor <= 0:
        raise ValueError(f"divisor must be positive, got {divisor}")
    return math.ceil(value / divisor)
