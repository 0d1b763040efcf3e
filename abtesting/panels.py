"""The A/B analysis panel: every figure of a test, for ``abtesting/snippets/analysis.html``.

Shown on the experiment page (the last planned look, and the live interim figures) and on a training
job's page (``{% analysis_panel %}`` from ``abtesting/templatetags/abtesting.py``).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from abtesting.models import Experiment


def analysis_panel(
    experiment: Experiment | None,
    *,
    results: dict | None = None,
    analysis: dict | None = None,
    interim: bool = False,
) -> dict[str, Any] | None:
    """Every figure of an A/B test in one dict for ``abtesting/snippets/analysis.html``.

    From the experiment's last analysis (``abtesting.services.analysis_record``), or ``analysis`` (the
    live interim one); a job whose experiment is gone still has the seed-style ``ab_test_results``
    (camelCase) to fall back on. What is shown as evidence depends on where the test stands: the
    decision interval at a planned look, the confidence sequence in between (interim), nothing that
    reads as a verdict after an early stop, and the fixed-horizon p-value only at the planned end.
    """
    if analysis is None:
        analysis = (experiment.last_analysis if experiment is not None else None) or {}
    results = results or analysis.get("ab_test_results") or {}
    if experiment is None and not results:
        return None
    alpha = analysis.get("alpha") or (experiment.significance_level if experiment is not None else None)
    level = f"{1 - alpha:.0%}" if alpha else ""
    sequential = analysis.get("sequential") or {}
    arms = []
    for name in ("control", "variant"):
        arm = analysis.get(name) or {}
        version = getattr(experiment, name, None) if experiment is not None else None
        arms.append({
            "name": name,
            "version": version.name if version is not None else "",
            "units": arm.get("units"),
            "n": arm.get("n"),
            "n_assigned": arm.get("n_assigned"),
            "successes": arm.get("successes"),
            "rate": arm.get("rate", results.get(f"{name}SuccessRate")),
            "low": arm.get("rate_low"),
            "high": arm.get("rate_high"),
            "rating_mean": arm.get("rating_mean"),
        })  # fmt: skip
    days = analysis.get("elapsed_days")
    if days is None and experiment is not None:
        days = ((experiment.ended_at or timezone.now()) - experiment.started_at).total_seconds() / 86400
    stopped = experiment is not None and experiment.status == Experiment.Status.STOPPED
    stopped = stopped or bool(analysis.get("stopped_early") or results.get("outcome"))
    outcome = (
        experiment.outcome
        if experiment is not None
        else results.get("outcome") or analysis.get("stopped_early") or ""
    )
    method = sequential.get("method", results.get("method", ""))
    planned_end = bool(analysis.get("final_look")) and method == "group_sequential" and not stopped
    min_improvement = analysis.get("min_improvement") or (
        experiment.min_improvement if experiment is not None else None
    )
    detectable = analysis.get("detectable_lift")
    return {
        "experiment": experiment,
        # The analysis stored at a stop was computed as an interim one; once stopped it is neither.
        "interim": (interim or bool(analysis.get("interim"))) and not stopped,
        "stopped": stopped,
        "outcome": outcome,
        "level": level,
        "arms": arms,
        # The arms' chart is fetched by the page (``abtesting.api_charts``, ``training.api_charts``).
        "has_chart": any(a["rate"] is not None for a in arms),
        "absolute_lift": analysis.get("absolute_lift"),
        "relative_lift": analysis.get("relative_lift", results.get("improvement")),
        # The fixed-horizon p-value is evidence only for one look at a fixed sample: shown at the planned
        # end (labelled), never while running or after an early stop.
        "fixed_p_value": analysis.get("fixed_p_value", results.get("pValue")) if planned_end else None,
        "planned_end": planned_end,
        "seq_method": method,
        "seq_p_value": sequential.get("p_value", results.get("sequentialPValue")),
        "seq_low": sequential.get("ci_low", results.get("improvementLow")),
        "seq_high": sequential.get("ci_high", results.get("improvementHigh")),
        "cs_low": sequential.get("cs_low"),
        "cs_high": sequential.get("cs_high"),
        "seq_look": sequential.get("look", results.get("look")),
        "seq_planned": sequential.get("planned_looks", results.get("plannedLooks")),
        "information": sequential.get("information_fraction"),
        "boundary_z": sequential.get("boundary_z"),
        "z": sequential.get("z"),
        "srm_p_value": analysis.get("srm_p_value", results.get("srmPValue")),
        "srm_ok": analysis.get("srm_ok"),
        "required": analysis.get("required_units"),
        "progress": analysis.get("progress"),
        "detectable": detectable,
        "underpowered": detectable is not None
        and min_improvement is not None
        and detectable > min_improvement,
        "min_improvement": min_improvement,
        "units": sum(a["units"] or 0 for a in arms) if any(a["units"] is not None for a in arms) else None,
        "days_running": days,
        "verdict": "no_decision"
        if stopped
        else analysis.get("verdict") or (experiment.decision if experiment is not None else ""),
        "reason": analysis.get("reason") or (experiment.decision_reason if experiment is not None else ""),
        "alpha": alpha,
    }
