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
    for a backfill with ``pgtrigger.ignore("telemetry.Telemetry:telemetry_evaluate_rules")`` (and
    ``…:telemetry_evaluate_merged_rules`` if the backfill merges into stored readings).
    """

    when = pgtrigger.After
    operation = pgtrigger.Insert
    level = pgtrigger.Statement
    referencing = pgtrigger.Referencing(new="new_rows")
    func = trigger_body("telemetry_evaluate_rules")


# What the INSERT trigger's body reads as its readings, and what the UPDATE trigger's reads instead: each updated
# reading with only the metrics the UPDATE added (ingest merging a reading into the stored one of its device and
# time), so that a merge evaluates its new metrics and never the ones evaluated when the reading was inserted.
_INSERTED_READINGS = "new_rows n"
_MERGED_READINGS = (
    "(SELECT m.device_id, m.time, m.metrics - ARRAY(SELECT jsonb_object_keys(s.metrics)) AS metrics"
    " FROM merged_rows m JOIN stored_rows s ON s.device_id = m.device_id AND s.time = m.time) n"
)


def merged_readings_body(body):
    """The rule trigger's ``body`` (sql/triggers/telemetry_evaluate_rules.plpgsql) for the UPDATE trigger: one
    source for the evaluation, reading the added metrics instead of ``new_rows``, after an early return for the
    UPDATE statements that changed nothing (INSERT … ON CONFLICT DO UPDATE fires the UPDATE statement triggers even
    when no row conflicted)."""
    code = "\n".join(line.split("--")[0] for line in body.splitlines())
    # Every reference to the readings is "new_rows n": anything else would be left reading the wrong rows.
    if code.count("new_rows") != code.count(_INSERTED_READINGS) or not code.count(_INSERTED_READINGS):
        raise ValueError("telemetry_evaluate_rules.plpgsql must read its readings only as 'new_rows n'")
    return "IF NOT EXISTS (SELECT FROM merged_rows) THEN\n    RETURN NULL;\nEND IF;\n" + body.replace(
        _INSERTED_READINGS, _MERGED_READINGS
    )


class EvaluateMergedRules(pgtrigger.Trigger):
    """Evaluates the enabled rules against the metrics an UPDATE added to stored readings (a merge), with the INSERT
    trigger's body (``merged_readings_body``); the metrics the readings had are not evaluated again."""

    when = pgtrigger.After
    operation = pgtrigger.Update
    level = pgtrigger.Statement
    referencing = pgtrigger.Referencing(old="stored_rows", new="merged_rows")
    func = merged_readings_body(trigger_body("telemetry_evaluate_rules"))
