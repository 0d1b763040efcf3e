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
    if analysis.get("multi_arm") or (experiment is not None and experiment.is_multi_arm):
        return multi_arm_panel(experiment, analysis=analysis, interim=interim)
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


# The dashboard's badge colours (static/css): better green, worse red, open blue.
STATUS_BADGES = {"better": "yes", "worse": "no", "open": "running"}


def _status(figures: dict[str, Any], winner: str | None, arm: str) -> str:
    """An arm's status in words: open, better (winner), worse (dropped at look N), no_difference, ..."""
    status = figures.get("status") or "open"
    if arm == winner:
        return "better: the winner"
    if figures.get("dropped_at_look"):
        return f"worse (dropped at look {figures['dropped_at_look']})"
    return status


def multi_arm_panel(
    experiment: Experiment | None, *, analysis: dict[str, Any], interim: bool = False
) -> dict[str, Any]:
    """Every arm of a multi-arm test (``abtesting.arms``'s record) for ``snippets/analysis_multi.html``:
    version, users, success rate with its interval, status, the Holm level it was tested at, its decision
    interval of the relative lift against the control, and the winner."""
    versions = dict(analysis.get("versions") or {})
    if experiment is not None:
        versions = {arm: version.name for arm, version in experiment.arm_versions()} | versions
    alpha = analysis.get("alpha") or (experiment.significance_level if experiment is not None else None)
    winner = analysis.get("winner")
    if experiment is not None and experiment.decision != Experiment.Decision.VARIANT_BETTER:
        # Only a concluded experiment has a winner (a look's unconfirmed one keeps it running; figures
        # seen at a stop are not a result).
        winner = None
    control = analysis.get("control") or {}
    rows = [
        {
            "name": "control",
            "version": versions.get("control", ""),
            "units": control.get("units"),
            "n": control.get("n"),
            "n_assigned": control.get("n_assigned"),
            "successes": control.get("successes"),
            "rate": control.get("rate"),
            "low": control.get("rate_low"),
            "high": control.get("rate_high"),
            "status": "control",
        }
    ]
    names = [a for a in (experiment.arms if experiment is not None else ()) if a != "control"]
    for arm in names or list(analysis.get("arms") or {}):
        figures = (analysis.get("arms") or {}).get(arm) or {}
        summary, seq = figures.get("summary") or {}, figures.get("sequential") or {}
        rows.append({
            "name": arm,
            "version": versions.get(arm, ""),
            "units": summary.get("units"),
            "n": summary.get("n"),
            "n_assigned": summary.get("n_assigned"),
            "successes": summary.get("successes"),
            "rate": summary.get("rate"),
            "low": summary.get("rate_low"),
            "high": summary.get("rate_high"),
            "status": _status(figures, winner, arm) if figures else "open",
            "badge": STATUS_BADGES.get(figures.get("status") or "open", ""),
            "relative_lift": figures.get("relative_lift"),
            "ci_low": seq.get("ci_low"),
            "ci_high": seq.get("ci_high"),
            "alpha_level": seq.get("alpha_level"),
            "z": seq.get("z"),
            "boundary_z": seq.get("boundary_z"),
            "is_winner": arm == winner,
        })  # fmt: skip
    look = analysis.get("look") or {}
    stopped = experiment is not None and experiment.status == Experiment.Status.STOPPED
    stopped = stopped or bool(analysis.get("stopped_early"))
    days = analysis.get("elapsed_days")
    if days is None and experiment is not None:
        days = ((experiment.ended_at or timezone.now()) - experiment.started_at).total_seconds() / 86400
    concluded = experiment is not None and experiment.status == Experiment.Status.CONCLUDED
    return {
        "multi": True,
        "experiment": experiment,
        "interim": (interim or bool(analysis.get("interim"))) and not stopped,
        "stopped": stopped,
        "outcome": experiment.outcome if experiment is not None else analysis.get("stopped_early") or "",
        "level": f"{1 - alpha:.0%}" if alpha else "",
        "arms": rows,
        "has_chart": any(r["rate"] is not None for r in rows),
        "winner": winner,
        "winner_version": versions.get(winner or "", ""),
        "winner_runner_up_distinguishable": analysis.get("winner_runner_up_distinguishable"),
        "seq_method": look.get("method", ""),
        "seq_look": look.get("look"),
        "seq_planned": look.get("planned_looks"),
        "information": look.get("information_fraction"),
        "srm_p_value": analysis.get("srm_p_value"),
        "srm_ok": analysis.get("srm_ok"),
        "required": analysis.get("required_units"),
        "progress": analysis.get("progress"),
        "units": analysis.get("units"),
        "days_running": days,
        "verdict": "no_decision" if stopped else analysis.get("verdict") or "",
        "reason": experiment.decision_reason if concluded else analysis.get("reason") or "",
        "alpha": alpha,
        "min_improvement": analysis.get("min_improvement")
        or (experiment.min_improvement if experiment is not None else None),
    }
