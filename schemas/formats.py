"""The formats the contract states once: codes' patterns, and the text a person types.

The patterns are here, not in domain/, so that every schema can state them (schemas import
nothing of the project's own); domain.codes builds and parses codes of the same form, and a
test keeps the two in step.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

# Decree 61/2018 art. 26 and Circular 01/2018 art. 19: the receiving agency's Circular
# 10/2016/TT-BTTTT code, the receipt day YYMMDD and a 4-digit daily sequence.
AGENCY_CODE_PATTERN = r"[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[A-Z][0-9]{2}"
DOSSIER_CODE_PATTERN = rf"^{AGENCY_CODE_PATTERN}-[0-9]{{6}}-[0-9]{{4}}$"
DOSSIER_CODE_MAX_LENGTH = 40
# The catalogue's unit slugs: `hoan-kiem`, `so-tu-phap`.
UNIT_CODE_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
UNIT_CODE_MAX_LENGTH = 64
# The national TTHC code: `1.001193`.
PROCEDURE_CODE_PATTERN = r"^[0-9]\.[0-9]{6}$"
# A page cursor: unpadded URL-safe base64 of the last line's key (store.views).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
CURSOR_MAX_LENGTH = 512

DossierCode = Annotated[
    str,
    Field(
        pattern=DOSSIER_CODE_PATTERN,
        max_length=DOSSIER_CODE_MAX_LENGTH,
        description="The dossier code on the receipt, e.g. `000.01.01.H26-261127-0001`",
    ),
]
UnitCode = Annotated[
    str,
    Field(
        pattern=UNIT_CODE_PATTERN,
        max_length=UNIT_CODE_MAX_LENGTH,
        description="A unit's code in the catalogue, e.g. `hoan-kiem`",
    ),
]
ProcedureCode = Annotated[
    str,
    Field(pattern=PROCEDURE_CODE_PATTERN, description="National TTHC code, e.g. `1.001193`"),
]

# --- text a person types -------------------------------------------------------------------
# Control characters (C0, DEL, C1) and the bidirectional overrides and isolates: invisible in
# a receipt, a timeline or a notice, they can make a name read as another one (Trojan Source,
# CVE-2021-42574), and PostgreSQL refuses a NUL outright. Free text keeps tab and line breaks.
_BIDI = "\u202a-\u202e\u2066-\u2069"
_ONE_LINE_REFUSED = rf"\x00-\x1f\x7f-\x9f{_BIDI}"
_MULTI_LINE_REFUSED = rf"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}"
ONE_LINE_PATTERN = rf"^[^{_ONE_LINE_REFUSED}]*$"
MULTI_LINE_PATTERN = rf"^[^{_MULTI_LINE_REFUSED}]*$"


def _refusing(allowed: frozenset[str]) -> AfterValidator:
    def check(value: str) -> str:
        for position, char in enumerate(value):
            code = ord(char)
            control = code < 0x20 or 0x7F <= code <= 0x9F
            bidi = 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
            if (control and char not in allowed) or bidi:
                kind = "a bidirectional override" if bidi else "a control character"
                raise ValueError(
                    f"must not contain control characters or bidirectional overrides "
                    f"({kind} U+{code:04X} at position {position})"
                )
        return value

    return AfterValidator(check)


Name = Annotated[
    str,
    _refusing(frozenset()),
    Field(json_schema_extra={"pattern": ONE_LINE_PATTERN}),
]
"""One line a person types: a name, a title, a reason on a form's single line."""

FreeText = Annotated[
    str,
    _refusing(frozenset("\t\n\r")),
    Field(json_schema_extra={"pattern": MULTI_LINE_PATTERN}),
]
"""A note or a reason that may run over several lines."""
