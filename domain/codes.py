"""Dossier codes: `<agency code>-YYMMDD-XXXX` (Decree 61/2018 art. 26, Circular 01/2018 art. 19).

The agency code is the receiving unit's (Circular 10/2016/TT-BTTTT form), then the receipt date
and a 4-digit sequence per agency and day. The code is printed on the receipt and is how a
citizen looks the dossier up on the national portal; it is also the workflow id.
"""

from __future__ import annotations

import re
from datetime import date

MAX_DAILY_SEQUENCE = 9999

_CODE = re.compile(
    r"^(?P<agency>[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[A-Z][0-9]{2})-(?P<day>[0-9]{6})-(?P<seq>[0-9]{4})$"
)


def dossier_code(agency_code: str, receipt_day: date, sequence: int) -> str:
    if not 1 <= sequence <= MAX_DAILY_SEQUENCE:
        raise ValueError(f"daily sequence {sequence} outside 1..{MAX_DAILY_SEQUENCE}")
    code = f"{agency_code}-{receipt_day:%y%m%d}-{sequence:04d}"
    if not _CODE.match(code):
        raise ValueError(f"agency code {agency_code!r} is not in the Circular 10/2016 form")
    return code


def is_dossier_code(value: str) -> bool:
    return _CODE.match(value) is not None


def sequence_scope(agency_code: str, receipt_day: date) -> str:
    """The counter a code's sequence is drawn from: one per agency and receipt day."""
    return f"dossier:{agency_code}:{receipt_day:%Y%m%d}"
