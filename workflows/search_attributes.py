"""Typed search attributes: how the Temporal UI and list queries filter dossiers."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PROCEDURE = SearchAttributeKey.for_keyword("DossierProcedure")
RECEIVING_UNIT = SearchAttributeKey.for_keyword("ReceivingUnit")
COMPETENT_UNIT = SearchAttributeKey.for_keyword("CompetentUnit")
TIER = SearchAttributeKey.for_keyword("DossierTier")
LANE = SearchAttributeKey.for_keyword("DossierLane")
STATUS = SearchAttributeKey.for_keyword("DossierStatus")
DUE_AT = SearchAttributeKey.for_datetime("DossierDueAt")
OVERDUE = SearchAttributeKey.for_bool("DossierOverdue")

ALL = (PROCEDURE, RECEIVING_UNIT, COMPETENT_UNIT, TIER, LANE, STATUS, DUE_AT, OVERDUE)
