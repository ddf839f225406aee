"""The 12-digit personal identification number (số định danh cá nhân).

Decree 137/2015 art. 7 (kept by Circular 59/2021): 3 digits of the province of birth
registration, 1 digit for sex and century of birth, 2 digits of the birth year, 6 random.
"""

from __future__ import annotations

# Province codes run 001..096 with gaps; 001 is Hà Nội.
# The form citizen_id_problem checks, stated for the OpenAPI document and its clients.
CITIZEN_ID_PATTERN = r"^(00[1-9]|0[1-8][0-9]|09[0-6])[0-3][0-9]{8}$"
_PROVINCE_CODES = frozenset(range(1, 97))


def citizen_id_problem(value: str) -> str | None:
    """Why `value` is not a well-formed citizen ID, or None when it is."""
    if len(value) != 12 or not value.isdigit():
        return "citizen_id must be exactly 12 digits"
    if int(value[:3]) not in _PROVINCE_CODES:
        return "citizen_id must start with a province code from 001 to 096"
    if value[3] not in "0123":
        return "citizen_id digit 4 (sex and century) must be 0-3 for births 1900-2099"
    return None


def masked(value: str) -> str:
    """What lists and logs show of a citizen ID: the province code and the last two digits."""
    return value[:3] + "*" * (len(value) - 5) + value[-2:]
