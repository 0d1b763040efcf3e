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
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from datetime import timedelta

from bench.common import median, setup_django, timer

RUNS = 7


def _insert(n_interactions: int, *, experiment, start, span: timedelta, rng: random.Random, tag: str) -> None:
    """Insert interactions (50/50 arms) and their feedback with executemany; ~1.05 feedback each."""
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
                arm = "variant" if rng.random() < 0.5 else "control"
                when = start + span * ((offset + k) / n_interactions)
                stamp = ops.adapt_datetimefield_value(when)
                version = experiment.variant_id if arm == "variant" else experiment.control_id
                rows.append(
                    (
                        experiment.assistant_id,
                        version,
                        experiment.pk,
                        arm,
                        f"u{rng.randrange(200_000)}",
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


def _analysis_rows(n: int) -> list[dict]:
    from django.utils import timezone

    from abtesting import services
    from abtesting import statistics as abstats
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
    with timer() as t_insert:
        _insert(n, experiment=experiment, start=started, span=timedelta(days=29.4), rng=rng, tag="bulk")

    rows: list[dict] = [
        {
            "measure": "setup: insert interactions + feedback",
            "value": t_insert.seconds,
            "unit": "s",
            "n": n,
            "target": None,
            "ok": None,
        }
    ]

    def analyse(at) -> float:
        start = time.perf_counter()
        services.experiment_analyse(experiment=experiment, now=at)
        return (time.perf_counter() - start) * 1000

    def cold_stats() -> None:
        abstats.gs_boundaries.cache_clear()

    # 1. The first analysis counts everything.
    cold_stats()
    first = analyse(now)
    rows.append(
        {
            "measure": "first analysis (counts all rows)",
            "value": first,
            "unit": "ms",
            "n": n,
            "target": None,
            "ok": None,
        }
    )
    with timer() as t_full:
        control_counts, variant_counts = experiment_arm_counts(experiment)
    tally = experiment.tally
    assert [control_counts.n_assigned, variant_counts.n_assigned] == [
        tally["control"][0],
        tally["variant"][0],
    ]
    assert [control_counts.successes, variant_counts.successes] == [tally["control"][2], tally["variant"][2]]
    rows.append(
        {
            "measure": "full recount in SQL (experiment_arm_counts)",
            "value": t_full.seconds * 1000,
            "unit": "ms",
            "n": n,
            "target": None,
            "ok": None,
        }
    )

    # 2. Steady state: each look adds about one hour of rows. Counting (SQL) and the rest (statistics,
    # saving the analysis and the snapshot) are timed apart; a new look's statistics are computed from
    # scratch (the daily decision), a second analysis within a look reuses them (dashboard refreshes).
    hourly = max(1, n // (30 * 24))
    count_ms, new_look_ms, same_look_ms = [], [], []
    for run in range(RUNS):
        at = timezone.now()
        _insert(
            hourly,
            experiment=experiment,
            start=at - timedelta(minutes=10),
            span=timedelta(minutes=5),
            rng=rng,
            tag=f"hour{run}",
        )
        start = time.perf_counter()
        services.experiment_tally_refresh(experiment=experiment, now=at + timedelta(minutes=3))
        count_ms.append((time.perf_counter() - start) * 1000)
        cold_stats()
        new_look_ms.append(analyse(at + timedelta(minutes=3)))
        same_look_ms.append(analyse(at + timedelta(minutes=3)))
    totals = [
        (f"count +1 hour of rows ({hourly:,}) in SQL", count_ms, None),
        ("statistics + save, new look", new_look_ms, None),
        ("statistics + save, same look", same_look_ms, None),
        (
            "analysis total, new look (count + stats)",
            [a + b for a, b in zip(count_ms, new_look_ms, strict=True)],
            200,
        ),
        ("analysis total, same look", [a + b for a, b in zip(count_ms, same_look_ms, strict=True)], 200),
    ]
    for label, values, target in totals:
        value = median(values)
        rows.append(
            {
                "measure": label,
                "value": value,
                "unit": "ms",
                "n": n,
                "target": target,
                "ok": value < target if target else None,
            }
        )

    # 3. A look that adds a whole day of rows.
    daily = n // 30
    timings_day = []
    for run in range(3):
        at = timezone.now()
        _insert(
            daily,
            experiment=experiment,
            start=at - timedelta(minutes=10),
            span=timedelta(minutes=5),
            rng=rng,
            tag=f"day{run}",
        )
        cold_stats()
        timings_day.append(analyse(at + timedelta(minutes=3)))
    rows.append(
        {
            "measure": f"analysis, +1 day of rows ({daily:,}), stats computed",
            "value": median(timings_day),
            "unit": "ms",
            "n": n,
            "target": None,
            "ok": None,
        }
    )

    # The statistics alone at the final look, uncached (the share of the analysis that is not SQL).
    c, v = (services.selectors.to_arm_counts(experiment.tally[arm]) for arm in ("control", "variant"))
    stats_ms = []
    for _ in range(3):
        cold_stats()
        start = time.perf_counter()
        abstats.analyse(
            control=c,
            variant=v,
            split=0.5,
            alpha=0.05,
            min_improvement=0.05,
            min_sample_size=100,
            look=30,
            planned_looks=30,
        )
        stats_ms.append((time.perf_counter() - start) * 1000)
    rows.append(
        {
            "measure": "statistics.analyse alone, look 30/30, uncached",
            "value": statistics.median(stats_ms),
            "unit": "ms",
            "n": None,
            "target": None,
            "ok": None,
        }
    )
    return rows


def _simulation_rows(quick: bool) -> list[dict]:
    from bench.abtest_sim import simulate_aa, simulate_power

    n_exp = 500 if quick else 2000
    aa = simulate_aa(n_experiments=n_exp, looks=30, per_arm_per_look=100, p=0.7, alpha=0.05)
    limit = aa["alpha"] + 3 * aa["mc_se"]
    rows = [
        {
            "measure": f"A/A simulation {n_exp} x 30 looks",
            "value": aa["seconds"],
            "unit": "s",
            "n": n_exp,
            "target": 30,
            "ok": aa["seconds"] < 30,
        },
        {
            "measure": "A/A false positives, naive p<0.05 daily",
            "value": aa["fpr_naive"],
            "unit": "rate",
            "n": n_exp,
            "target": None,
            "ok": None,
        },
        {
            "measure": "A/A false positives, group-sequential",
            "value": aa["fpr_sequential"],
            "unit": "rate",
            "n": n_exp,
            "target": round(limit, 4),
            "ok": aa["fpr_sequential"] <= limit,
        },
        {
            "measure": "A/A false positives, confidence sequence",
            "value": aa["fpr_confidence_sequence"],
            "unit": "rate",
            "n": n_exp,
            "target": round(limit, 4),
            "ok": aa["fpr_confidence_sequence"] <= limit,
        },
        {
            "measure": "A/A false positives, fixed horizon (day 30 only)",
            "value": aa["fpr_fixed"],
            "unit": "rate",
            "n": n_exp,
            "target": None,
            "ok": None,
        },
    ]
    pw = simulate_power(
        n_experiments=n_exp, looks=30, per_arm_per_look=100, p_control=0.7, relative_lift=0.05
    )
    rows += [
        {
            "measure": "power, fixed horizon at day 30",
            "value": pw["power_fixed"],
            "unit": "rate",
            "n": n_exp,
            "target": None,
            "ok": None,
        },
        {
            "measure": "power, group-sequential (decision rule)",
            "value": pw["power_sequential"],
            "unit": "rate",
            "n": n_exp,
            "target": None,
            "ok": None,
        },
        {
            "measure": "power, confidence sequence (fallback)",
            "value": pw["power_confidence_sequence"],
            "unit": "rate",
            "n": n_exp,
            "target": None,
            "ok": None,
        },
        {
            "measure": "power ratio sequential / fixed",
            "value": pw["sequential_vs_fixed"],
            "unit": "ratio",
            "n": n_exp,
            "target": 0.9,
            "ok": (pw["sequential_vs_fixed"] or 0) >= 0.9,
        },
        {
            "measure": "mean days to a sequential decision",
            "value": pw["sequential_mean_days"],
            "unit": "days",
            "n": n_exp,
            "target": None,
            "ok": None,
        },
        {
            "measure": "power simulation time",
            "value": pw["seconds"],
            "unit": "s",
            "n": n_exp,
            "target": None,
            "ok": None,
        },
    ]
    return rows


def run(args) -> list[dict]:
    quick = getattr(args, "quick", False)
    n = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-abtest-") as tmp:
        setup_django(tmp)
        rows = _analysis_rows(n)
    return rows + _simulation_rows(quick)


if __name__ == "__main__":
    import argparse

    from bench.__main__ import print_table

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print_table("abtest", run(parser.parse_args()))
