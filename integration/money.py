"""Decimal arithmetic for money and quantities: one place decides precision and rounding."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from functools import cache

__all__ = [
    "ZERO",
    "QTY_PLACES",
    "LEDGER_LIMIT",
    "quantity",
    "amount",
    "minor_units",
    "to_minor",
    "from_minor",
]

ZERO = Decimal(0)
# The largest magnitude one journal line or stock move may carry (a quadrillion currency units
# or base units): its minor units fit a signed 64-bit integer with room for sums.
LEDGER_LIMIT = Decimal(10) ** 15
QTY_PLACES = 6
_QTY_EXP = Decimal(1).scaleb(-QTY_PLACES)

# ISO 4217 minor units for the currencies whose exponent is not 2.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3}


@cache
def minor_units(currency: str) -> int:
    """How many decimal places an amount in `currency` carries."""
    return _MINOR_UNITS.get(currency, 2)


def _rounded(value: Decimal, exponent: Decimal) -> Decimal:
    """`value` quantized to `exponent` (banker's rounding); never fails on a finite value.

    The default context holds 28 digits, too few for, say, 1e22 at six places: such a value
    is quantized with just enough digits and left for the ledger's range check
    (`LEDGER_LIMIT`) to refuse, rather than raising from deep inside a posting rule.
    """
    try:
        return value.quantize(exponent, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        if not value.is_finite():
            raise
        wide = Context(prec=value.adjusted() - exponent.adjusted() + 2)
        return value.quantize(exponent, rounding=ROUND_HALF_EVEN, context=wide)


def quantity(value: Decimal) -> Decimal:
    """A quantity rounded to the ledger's precision (six places, banker's rounding)."""
    return _rounded(value, _QTY_EXP)


@cache
def _exponent(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def amount(value: Decimal, currency: str) -> Decimal:
    """An amount rounded to the currency's minor unit (banker's rounding)."""
    return _rounded(value, _exponent(currency))


def to_minor(value: Decimal, currency: str) -> int:
    """An amount as an integer count of minor units (cents), exact."""
    scaled = value.scaleb(minor_units(currency))
    units = int(scaled)
    return units if units == scaled else int(amount(value, currency).scaleb(minor_units(currency)))


def from_minor(units: int, currency: str) -> Decimal:
    """The inverse of `to_minor`."""
    return amount(Decimal(units).scaleb(-minor_units(currency)), currency)
