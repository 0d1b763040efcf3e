"""A/B bench: analysing an experiment with 1,000,000 interactions, and the decision rules under peeking.

``python -m bench abtest [--quick]`` (``--quick``: 100,000 interactions, 500 simulated experiments).

Analysis (issue 5 target: < 200 ms for 1M interactions and their feedback). A throwaway SQLite database
(``bench.common.setup_django``; PostgreSQL with ``BENCH_EXTERNAL_DB=1``) gets one experiment with 1M
interactions spread over 30 days, each with one signal feedback (thumbs or rating) and 5% with a second
one (a change of mind, which must not count twice). Rows go in with ``executemany``, not the ORM, so the
setup takes seconds. Then ``abtesting.services.experiment_analyse`` is timed (median of several runs):

- the first analysis, which counts all rows (the tally is empty);
- steady state: the hourly ``refresh_tallies`` task has kept the counts current, a look adds ~1 hour of
  rows (1M / 30 days / 24 h); the statistics of the look are computed from scratch (their cache cleared)
  and, separately, reused (a second analysis within the same look);
- a look that has to add a whole day's rows (if the hourly task did not run).

Simulations: ``bench.abtest_sim`` — 2,000 A/A experiments × 30 daily looks (target < 30 s), false-positive
rates of the naive and sequential rules, and the power of the fixed-horizon, group-sequential and
confidence-sequence rules in the issue's scenario (70% control, +5% relative, 100 per arm per day).
Multi-arm (issue 18, ``abtesting.multiarm.analyse_multi``): A/A/A (a control and 2 variants), 30 looks,
the share of experiments in which any arm is declared better (target alpha + 3 SE); and with one
variant +10% and one equal, how often each wins. 2,000 A/A/A and 1,000 power runs (100 and 50 quick).
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import timedelta

from bench.common import median, setup_django, timer

RUNS = 7
SEED = 20261202  # the simulations' seed (each scenario offsets it)


def _insert(
    n_interactions: int, *, experiment, start, span: timedelta, rng: random.Random, tag: str, n_users: int
) -> None:
    """Insert interactions from ``n_users`` users and their feedback with executemany; ~1.05 feedback each.

    Each user keeps an arm (as routing does): the arm is a hash of the user.
    """
    from django.db import connection, transaction

    from feedback.models import Feedback, Interaction

    ops = connection.ops
    it, fb = Interaction._meta, Feedback._meta
    i_cols = [
        "assistant_id",
        "model_version_id",
        "experiment_id",
        "arm",
        "user_ref",
        "request_id",
        "messages",
        "response",
        "created_at",
    ]
    f_cols = [
        "interaction_id",
        "assistant_id",
        "kind",
        "helpful",
        "rating",
        "comment",
        "suggestion",
        "corrected_answer",
        "excluded_from_training",
        "request_hash",
        "created_at",
    ]
    i_sql = f"INSERT INTO {it.db_table} ({', '.join(i_cols)}) VALUES ({', '.join(['%s'] * len(i_cols))})"
    f_sql = f"INSERT INTO {fb.db_table} ({', '.join(f_cols)}) VALUES ({', '.join(['%s'] * len(f_cols))})"
    chunk = 50_000
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {it.db_table}")
        first_id = cursor.fetchone()[0] + 1
        for offset in range(0, n_interactions, chunk):
            size = min(chunk, n_interactions - offset)
            rows, feedback = [], []
            for k in range(size):
                user = rng.randrange(n_users)
                arm = "variant" if (user * 2654435761) % 2**32 < 2**31 else "control"
                when = start + span * ((offset + k) / n_interactions)
                stamp = ops.adapt_datetimefield_value(when)
                version = experiment.variant_id if arm == "variant" else experiment.control_id
                rows.append(
                    (
                        experiment.assistant_id,
                        version,
                        experiment.pk,
                        arm,
                        f"u{user}",
                        f"{tag}-{offset + k}",
                        "[]",
                        "",
                        stamp,
                    )
                )
                iid = first_id + offset + k
                p = 0.735 if arm == "variant" else 0.70
                for _ in range(2 if rng.random() < 0.05 else 1):
                    if rng.random() < 0.5:
                        feedback.append(
                            (
                                iid,
                                experiment.assistant_id,
                                "thumbs",
                                rng.random() < p,
                                None,
                                "",
                                "",
                                "",
                                False,
                                "",
                                stamp,
                            )
                        )
                    else:
                        rating = rng.choice((4, 5)) if rng.random() < p else rng.choice((1, 2, 3))
                        feedback.append(
                            (
                                iid,
                                experiment.assistant_id,
                                "rating",
                                None,
                                rating,
                                "",
                                "",
                                "",
                                False,
                                "",
                                stamp,
                            )
                        )
            cursor.executemany(i_sql, rows)
            cursor.executemany(f_sql, feedback)
    # Rows were numbered from MAX(id)+1; make sure the database agrees (it does on SQLite and a fresh PG).
    if (
        Interaction.objects.filter(experiment_id=experiment.pk, request_id=f"{tag}-0").values_list(
            "id", flat=True
        )[0]
        != first_id
    ):  # pragma: no cover - only if ids were not sequential
        raise RuntimeError(
            "interaction ids were not assigned sequentially; the bench's feedback rows are wrong"
        )


def _row(measure: str, value, unit: str, n=None, target=None, ok=None) -> dict:
    return {"measure": measure, "value": value, "unit": unit, "n": n, "target": target, "ok": ok}


def _analysis_rows(n: int, n_users: int) -> list[dict]:
    from django.utils import timezone

    from abtesting import services
    from abtesting import statistics as abstats
    from abtesting.models import Experiment
    from abtesting.selectors import experiment_arm_counts
    from assistants.services import assistant_create, deployment_make_live, model_version_create

    assistant = assistant_create(slug="bench", name="Bench")
    control = model_version_create(assistant=assistant, name="bench-v1")
    deployment_make_live(version=control, reason="initial")
    variant = model_version_create(assistant=assistant, name="bench-v2")
    now = timezone.now()
    started = now - timedelta(days=29.5)
    experiment = services.experiment_start(
        assistant=assistant, control=control, variant=variant, max_duration_days=30, now=started
    )
    rng = random.Random(5)
    insert = dict(experiment=experiment, rng=rng, n_users=n_users)
    with timer() as t_insert:
        _insert(n, start=started, span=timedelta(days=29.4), tag="bulk", **insert)
    rows = [_row("setup: insert interactions + feedback", t_insert.seconds, "s", n)]

    def analyse(at, *, look: bool) -> float:
        start = time.perf_counter()
        services.experiment_analyse(experiment=experiment, now=at, planned_look=look)
        return (time.perf_counter() - start) * 1000

    def due_look() -> None:
        """Make the daily look due again (the plan remembers 28 looks taken, look 29 of 30 is due)."""
        plan = dict(experiment.plan)
        plan["fractions"] = [0.9 * (k + 1) / 29 for k in range(28)]
        Experiment.objects.filter(pk=experiment.pk).update(plan=plan)
        experiment.plan = plan
        abstats.gs_boundaries_cache_clear()  # a new look's boundaries are computed, not cached

    # 1. The first analysis counts everything (and fills ExperimentUnit: one row per user and arm).
    first = analyse(now, look=False)
    rows.append(_row(f"first analysis (counts all rows, {n_users:,} users)", first, "ms", n))
    with timer() as t_full:
        control_counts, variant_counts = experiment_arm_counts(experiment)
    tally = experiment.tally
    for arm, counts in (("control", control_counts), ("variant", variant_counts)):
        stored = abstats.ArmCounts(**tally[arm])
        assert stored == counts, f"incremental {arm} sums differ from a recount: {stored} != {counts}"
    rows.append(_row("full recount in SQL (experiment_arm_counts)", t_full.seconds * 1000, "ms", n))

    # 2. Steady state: each look adds about one hour of rows (the hourly refresh_tallies task keeps the
    # per-unit sums current). Counting and the rest (plan, statistics, saving) are timed apart; a new
    # planned look computes its boundaries from scratch, an interim view reuses nothing either.
    hourly = max(1, n // (30 * 24))
    count_ms, look_ms, interim_ms = [], [], []
    for run in range(RUNS):
        at = timezone.now()
        _insert(
            hourly, start=at - timedelta(minutes=10), span=timedelta(minutes=5), tag=f"hour{run}", **insert
        )
        start = time.perf_counter()
        services.experiment_tally_refresh(experiment=experiment, now=at + timedelta(minutes=3))
        count_ms.append((time.perf_counter() - start) * 1000)
        due_look()
        look_ms.append(analyse(at + timedelta(minutes=3), look=True))
        assert experiment.last_analysis["sequential"]["method"] == "group_sequential"
        interim_ms.append(analyse(at + timedelta(minutes=3), look=False))
    for label, values, target in (
        (f"count +1 hour of rows ({hourly:,}) in SQL", count_ms, None),
        ("plan + statistics + save, new planned look", look_ms, None),
        ("statistics + save, interim", interim_ms, None),
        (
            "analysis at a new look (count + look)",
            [a + b for a, b in zip(count_ms, look_ms, strict=True)],
            200,
        ),
    ):
        value = median(values)
        rows.append(_row(label, value, "ms", n, target, value < target if target else None))

    # 3. A look that has to add a whole day's rows (if the hourly task did not run).
    daily = n // 30
    timings_day = []
    for run in range(3):
        at = timezone.now()
        _insert(daily, start=at - timedelta(minutes=10), span=timedelta(minutes=5), tag=f"day{run}", **insert)
        due_look()
        timings_day.append(analyse(at + timedelta(minutes=3), look=True))
    rows.append(_row(f"analysis at a new look, +1 day of rows ({daily:,})", median(timings_day), "ms", n))

    # The statistics alone at the final look, uncached (the share of the analysis that is not SQL).
    c, v = (abstats.ArmCounts(**experiment.tally[arm]) for arm in ("control", "variant"))
    stats_ms = []
    for _ in range(3):
        abstats.gs_boundaries_cache_clear()
        start = time.perf_counter()
        abstats.analyse(
            control=c,
            variant=v,
            split=0.5,
            alpha=0.05,
            min_improvement=0.05,
            min_sample_size=100,
            look=abstats.Look(30, 30, tuple((k + 1) / 30 for k in range(30)), True),
            cs_tuning_n=2 * n_users,
        )
        stats_ms.append((time.perf_counter() - start) * 1000)
    rows.append(_row("statistics.analyse alone, look 30/30, boundaries uncached", median(stats_ms), "ms"))
    return rows


def _simulation_rows(quick: bool, seed: int) -> list[dict]:
    from bench.abtest_sim import simulate, simulate_srm

    n_exp = 100 if quick else 2000
    rows: list[dict] = []
    alpha = 0.05

    def limit(result) -> float:
        return round(100 * (alpha + 3 * result["mc_se"]), 2)

    def pct(rate: float) -> float:
        return 100 * rate  # rates in percent: the table prints two decimals

    for looks in (7, 30):
        for rho in (0.0, 0.1, 0.3):
            r = simulate(n_experiments=n_exp, days=looks, rho=rho, seed=seed)
            rows.append(
                _row(f"A/A false better/worse, rho={rho}, {looks} looks", pct(r["any"]), "%", n_exp,
                     limit(r), pct(r["any"]) <= limit(r))
            )  # fmt: skip
            if looks == 30 and rho == 0.1:
                rows.append(
                    _row("  (fixed-horizon user-level test, same runs)", pct(r["fixed_any"]), "%", n_exp)
                )
                srm_in_runs = r["invalid_srm"]
    for looks in (7, 30):
        r = simulate(n_experiments=n_exp, days=looks, rho=0.1, ramp=True, seed=seed + 1)
        rows.append(
            _row(f"A/A ramp (day 1 at 10%), rho=0.1, {looks} looks", pct(r["any"]), "%", n_exp, limit(r),
                 pct(r["any"]) <= limit(r))
        )  # fmt: skip
    for lift in (0.05, 0.10):
        r = simulate(n_experiments=n_exp, days=30, rho=0.1, lift=lift, seed=seed + 2)
        ratio = r["better"] / r["fixed_better"] if r["fixed_better"] else None
        rows.append(_row(f"power +{lift:.0%} from 70%, rho=0.1, 30 looks", pct(r["better"]), "%", n_exp))
        rows.append(_row("  fixed-horizon user-level test, same sample", pct(r["fixed_better"]), "%", n_exp))
        rows.append(
            _row(f"  sequential / fixed at +{lift:.0%}", ratio, "ratio", n_exp, 0.95, (ratio or 0) >= 0.95)
        )
        rows.append(_row(f"  mean day of the decision at +{lift:.0%}", r["mean_days"], "days", n_exp))
        if lift == 0.10:
            rows.append(
                _row("false auto-deploys (true +10%, threshold 15%)", pct(r["auto_deploy"]), "%", n_exp, 2.5,
                     r["auto_deploy"] <= 0.025)
            )  # fmt: skip
    n_srm = 2000 if quick else 100_000
    srm = simulate_srm(n_experiments=n_srm, looks=30, seed=seed + 3)
    rows.append(
        _row("false invalid_srm, sequential SRM, 30 looks", pct(srm["sequential"]), "%", n_srm, 0.1,
             srm["sequential"] <= 0.001)
    )  # fmt: skip
    rows.append(_row("  (old: chi-square at 0.001 every day)", pct(srm["daily_chi_square"]), "%", n_srm))
    rows.append(
        _row("  false invalid_srm in the A/A runs above (rho=0.1, 30 looks)", pct(srm_in_runs), "%", n_exp)
    )
    return rows + _multi_arm_rows(quick, seed)


def _multi_arm_rows(quick: bool, seed: int) -> list[dict]:
    """Issue 18: a control and 2 variants, Holm over the arms inside the group-sequential plan."""
    from bench.abtest_sim import simulate_multi

    alpha = 0.05
    n_aaa, n_power = (100, 50) if quick else (2000, 1000)
    rows: list[dict] = []
    r = simulate_multi(n_experiments=n_aaa, days=30, rho=0.1, lifts=(0.0, 0.0), alpha=alpha, seed=seed + 4)
    limit = round(100 * (alpha + 3 * r["mc_se"]), 2)
    for label, rate in (
        ("A/A/A any arm declared better, rho=0.1, 30 looks", r["any_better"]),
        ("  any arm declared better or worse (familywise)", r["any_decision"]),
    ):
        rows.append(_row(label, 100 * rate, "%", n_aaa, limit, 100 * rate <= limit))
    rows.append(_row("  false invalid_srm (3-arm sequential SRM)", 100 * r["invalid_srm"], "%", n_aaa))
    rows.append(_row("  analyse_multi per look (boundaries included)", r["ms_per_analysis"], "ms", n_aaa))
    seconds = r["seconds"]
    r = simulate_multi(n_experiments=n_power, days=30, rho=0.1, lifts=(0.10, 0.0), alpha=alpha, seed=seed + 5)
    limit = round(100 * (alpha + 3 * r["mc_se"]), 2)
    rows.append(
        _row("3 arms, +10% and +0% from 70%: the +10% arm wins", 100 * r["wins"]["variant"], "%", n_power)
    )
    wrong = 100 * r["wins"]["variant2"]
    rows.append(_row("  the +0% arm wins", wrong, "%", n_power, limit, wrong <= limit))
    rows.append(_row("  mean day of the decision", r["mean_days"], "days", n_power))
    rows.append(_row("multi-arm simulations' wall time (both scenarios)", seconds + r["seconds"], "s"))
    return rows


def run(args) -> list[dict]:
    quick = getattr(args, "quick", False)
    n, n_users = (100_000, 10_000) if quick else (1_000_000, 100_000)
    with tempfile.TemporaryDirectory(prefix="bench-abtest-") as tmp:
        setup_django(tmp)
        rows = _analysis_rows(n, n_users)
        # The simulations after the database part: they need Django's settings, not its database.
        return rows + _simulation_rows(quick, SEED)


if __name__ == "__main__":
    import argparse

    from bench.__main__ import print_table

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    # The multi-arm scenarios alone (a few minutes), without the database part and the two-arm scenarios.
    parser.add_argument("--multi-arm", action="store_true")
    args = parser.parse_args()
    if not args.multi_arm:
        print_table("abtest", run(args))
    else:
        import os

        load = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="bench-abtest-") as tmp:
            setup_django(tmp)
            multi = _multi_arm_rows(args.quick, SEED)
        after = os.getloadavg()
        print(
            f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) before, "
            f"{after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} after, {os.cpu_count()} CPUs, seed {SEED}"
        )
        print_table("abtest (multi-arm)", multi)
