"""Triggers of the rules app. Their bodies live in sql/triggers/ so a DBA reads them as SQL.

This module imports no models: telemetry/models.py imports it to install the rule trigger on the telemetry table.
"""

from pathlib import Path

import pgtrigger

TRIGGERS_DIR = Path(__file__).resolve().parents[1] / "sql" / "triggers"


def trigger_body(name):
    """The PL/pgSQL block in ``sql/triggers/<name>.plpgsql``.

    Returned as a plain string, which pgtrigger uses as written: a ``pgtrigger.Func`` would run it through
    ``str.format`` and every literal brace (``#>> '{}'``, ``'{device_name}'``) would have to be doubled.
    """
    return (TRIGGERS_DIR / f"{name}.plpgsql").read_text()


class EventStatusTransition(pgtrigger.Trigger):
    """Refuses any change of an event's status other than open → acknowledged → resolved or open → resolved."""

    when = pgtrigger.Before
    operation = pgtrigger.UpdateOf("status")
    level = pgtrigger.Row
    condition = pgtrigger.Q(old__status__df=pgtrigger.F("new__status"))
    func = trigger_body("event_status_transition")


class EvaluateRules(pgtrigger.Trigger):
    """Evaluates the enabled rules against the readings an INSERT added, writing events and notifications.

    Statement-level with a transition table (``new_rows``), so one set-based pass covers a whole batch. Skip it
    for a backfill with ``pgtrigger.ignore("telemetry.Telemetry:telemetry_evaluate_rules")``.
    """

    when = pgtrigger.After
    operation = pgtrigger.Insert
    level = pgtrigger.Statement
    referencing = pgtrigger.Referencing(new="new_rows")
    func = trigger_body("telemetry_evaluate_rules")
