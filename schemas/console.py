"""Who may use the web console, and for what."""

from __future__ import annotations

from enum import StrEnum


class ConsoleRole(StrEnum):
    CITY_LEADER = "city_leader"  # lãnh đạo thành phố: every dashboard and dossier, read-only
    UNIT_LEADER = "unit_leader"  # lãnh đạo đơn vị: their own unit's, read-only
    OPERATOR = "operator"  # vận hành: the operators' page, retry and reset
    AUDITOR = "auditor"  # kiểm tra: everything read-only, and the downloads
