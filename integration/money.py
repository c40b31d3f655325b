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


def _widened(value: Decimal, exponent: Decimal) -> Decimal:
    """`value` quantized to `exponent` when the default context's 28 digits are too few (say,
    1e22 at six places): with just enough digits, left for the ledger's range check
    (`LEDGER_LIMIT`) to refuse, rather than raising from deep inside a posting rule.

    Called while handling the quantize's InvalidOperation, which it re-raises for a value
    that is not finite."""
    if not value.is_finite():
        raise  # the InvalidOperation being handled
    wide = Context(prec=value.adjusted() - exponent.adjusted() + 2)
    return value.quantize(exponent, rounding=ROUND_HALF_EVEN, context=wide)


def quantity(value: Decimal) -> Decimal:
    """A quantity rounded to the ledger's precision (six places, banker's rounding)."""
    try:
        return value.quantize(_QTY_EXP, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        return _widened(value, _QTY_EXP)


class _Exponents(dict):
    """The quantum of each currency's minor unit, e.g. Decimal('0.01'), made on first use."""

    def __missing__(self, currency: str) -> Decimal:
        exponent = self[currency] = Decimal(1).scaleb(-minor_units(currency))
        return exponent


_EXPONENTS = _Exponents()


def amount(value: Decimal, currency: str) -> Decimal:
    """An amount rounded to the currency's minor unit (banker's rounding)."""
    exponent = _EXPONENTS[currency]
    try:
        return value.quantize(exponent, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        return _widened(value, exponent)


def to_minor(value: Decimal, currency: str) -> int:
    """An amount as an integer count of minor units (cents), exact."""
    places = minor_units(currency)
    scaled = value.scaleb(places)
    units = int(scaled)
    return units if units == scaled else int(amount(value, currency).scaleb(places))


def from_minor(units: int, currency: str) -> Decimal:
    """The inverse of `to_minor`."""
    return amount(Decimal(units).scaleb(-minor_units(currency)), currency)
