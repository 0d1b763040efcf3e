"""The demo simulator: customers ask FAQ questions, read the answer, and say whether it helped.

``simulate --live URL`` is what ``make run`` starts beside the web server on a demo-only database: it
writes the demo's back-dated history once (a fresh database), then keeps customers arriving through the
gateway at ``URL`` over HTTP (``training.demo_loop``). Without ``--live``, for scripting:

Each simulated customer asks one question (an FAQ question or a paraphrase) through the version that
routing gives them (live, or an A/B arm), the interaction is logged, and the customer gives feedback by
comparing the answer with the true answer (``answer_quality``): helpful when it is correct, a rating from
the quality, and — for some wrong answers — the correct answer as a correction. Retraining on that
feedback teaches the model what it got wrong, so the success rate rises on the next run.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict

from django.core.management.base import BaseCommand, CommandError
from django_q.tasks import async_task

from abtesting.routing import route
from assistants.backends import BackendError, answer
from assistants.models import Assistant
from feedback.models import Interaction
from feedback.services import feedback_submit, interaction_log
from training.demo import DEMO_SLUG, demo_only, demo_policy_live
from training.demo_data import customer_questions
from training.demo_loop import (
    HISTORY_DAYS,
    GatewayUnavailable,
    customer_feedback,
    demo_customer_key,
    demo_customers_run,
    demo_history_write,
    wait_for_server,
)
from training.schedules import CHECK_FUNC


def _route(assistant: Assistant, user_ref: str):
    chosen = route(assistant=assistant, user_ref=user_ref)
    return chosen.model_version, chosen.experiment_id, chosen.arm


def simulate(
    *,
    assistant: Assistant,
    interactions: int,
    feedback_rate: float = 1.0,
    correction_rate: float = 0.5,
    error_rate: float = 0.0,
    seed: int | None = None,
) -> dict:
    """Run the customers; returns counts and success rates per model version."""
    rng = random.Random(seed)
    questions = customer_questions()
    per_version: dict[str, dict[str, int]] = defaultdict(lambda: {"asked": 0, "feedback": 0, "helpful": 0})
    corrections = 0
    for _ in range(interactions):
        user_ref = f"customer-{rng.randrange(10**6)}"
        question, truth = rng.choice(questions)
        version, experiment_id, arm = _route(assistant, user_ref)
        if version is None:
            raise CommandError(f"'{assistant.slug}' has no live version to answer with; train one first.")
        messages = [{"role": "user", "content": question}]
        error = None
        try:
            result = answer(version=version, messages=messages)
            text, latency = result.text, result.latency_ms
        except BackendError as exc:
            text, latency, error = "", None, str(exc)[:500]
        if error is None and rng.random() < error_rate:
            error = "simulated upstream timeout"
        logged = interaction_log(
            assistant=assistant,
            request_id=f"sim-{uuid.UUID(int=rng.getrandbits(128))}",
            messages=messages,
            response=text,
            user_ref=user_ref,
            model_version=version,
            latency_ms=latency,
            error=error,
            experiment_id=experiment_id,
            arm=arm,
        )
        stats = per_version[version.name]
        stats["asked"] += 1
        if error or rng.random() >= feedback_rate:
            continue
        data = customer_feedback(rng, text=text, truth=truth, correction_rate=correction_rate)
        helpful = data["helpful"]
        corrections += "corrected_answer" in data
        feedback_submit(interaction=logged.interaction, data=data)
        stats["feedback"] += 1
        stats["helpful"] += helpful
    return {
        "interactions": interactions,
        "corrections": corrections,
        "versions": {
            name: {**s, "success_rate": (s["helpful"] / s["feedback"]) if s["feedback"] else None}
            for name, s in per_version.items()
        },
    }


class Command(BaseCommand):
    help = "Simulate customers asking the demo shop's FAQ questions and giving feedback."

    def add_arguments(self, parser):
        parser.add_argument("--assistant", default="demo", help="Slug (default: demo).")
        parser.add_argument(
            "--interactions", type=int, default=200, help="How many customers ask (default 200)."
        )
        parser.add_argument(
            "--feedback-rate",
            type=float,
            default=None,
            help="Share who give feedback (0–1; default 1, and 0.8 with --live).",
        )
        parser.add_argument(
            "--correction-rate", type=float, default=0.5, help="Share of wrong answers corrected."
        )
        parser.add_argument(
            "--error-rate", type=float, default=0.0, help="Share of interactions logged as errors."
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed for a repeatable run.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Afterwards, check the retrain policy and start a job if due.",
        )
        parser.add_argument(
            "--live",
            metavar="URL",
            default=None,
            help=(
                "The demo that `make run` starts: write the demo's back-dated history on a fresh database, "
                "then keep customers arriving through the gateway at URL (e.g. http://127.0.0.1:8000). "
                "Only on a database whose one assistant is the demo."
            ),
        )
        parser.add_argument(
            "--per-minute",
            type=float,
            default=90.0,
            help="--live: customers arriving per minute (default 90: the A/B test decides in minutes).",
        )
        parser.add_argument(
            "--customers", type=int, default=None, help="--live: stop after this many (default: never)."
        )
        parser.add_argument(
            "--history-days", type=int, default=HISTORY_DAYS, help="--live: days of back-dated history."
        )

    def handle(
        self,
        *args,
        assistant,
        interactions,
        feedback_rate,
        correction_rate,
        error_rate,
        seed,
        check,
        live,
        per_minute,
        customers,
        history_days,
        **options,
    ):
        for name, value in (
            ("feedback-rate", feedback_rate),
            ("correction-rate", correction_rate),
            ("error-rate", error_rate),
        ):
            if value is not None and not 0 <= value <= 1:
                raise CommandError(f"--{name} must be between 0 and 1, got {value}.")
        if live:
            return self._live(live, per_minute, customers, history_days, feedback_rate, correction_rate, seed)
        target = Assistant.objects.filter(slug=assistant).select_related("live_version").first()
        if target is None:
            raise CommandError(
                f"No assistant '{assistant}'. Run `manage.py start --setup-only` for the demo."
            )
        if interactions < 1:
            raise CommandError("--interactions must be at least 1.")
        report = simulate(
            assistant=target,
            interactions=interactions,
            feedback_rate=1.0 if feedback_rate is None else feedback_rate,
            correction_rate=correction_rate,
            error_rate=error_rate,
            seed=seed,
        )
        self.stdout.write(f"{interactions} interactions, {report['corrections']} corrections given.")
        for name, stats in sorted(report["versions"].items()):
            rate = stats["success_rate"]
            shown = "n/a" if rate is None else f"{rate:.1%}"
            self.stdout.write(
                f"  {name}: {stats['asked']} asked, {stats['feedback']} with feedback, success {shown}"
            )
        if check:
            from django.core.management import call_command

            call_command("check_retraining", assistant=target.slug, trigger=True, stdout=self.stdout)

    def _live(self, url, per_minute, customers, history_days, feedback_rate, correction_rate, seed) -> None:
        if not demo_only():
            raise CommandError(
                "The live demo only runs on a database whose one assistant is the demo: this one has others."
            )
        if per_minute <= 0 or history_days < 0 or (customers is not None and customers < 1):
            raise CommandError(
                "--per-minute must be above 0, --history-days 0 or more, --customers 1 or more."
            )
        demo = Assistant.objects.select_related("live_version", "policy").get(slug=DEMO_SLUG)
        if history_days and not Interaction.objects.filter(assistant=demo).exists():
            self.stdout.write(f"Demo: writing {history_days} days of history…")
            totals = demo_history_write(
                assistant=demo, days=history_days, seed=seed or 0, progress=self.stdout.write
            )
            self.stdout.write(
                f"Demo: history written ({totals['interactions']} interactions, "
                f"{totals['feedback']} feedback, {totals['corrections']} corrections)."
            )
            policy = demo_policy_live(assistant=demo)
            # The history leaves a reason to retrain: the first check runs now, not at the schedule's next
            # minute (up to a minute and a half with the worker's half-minute scheduler).
            async_task(CHECK_FUNC, demo.pk)
            looks = policy.ab_look_interval_minutes
            self.stdout.write(
                "Demo: the retrain check runs now, then every minute; A/B tests take a planned look every "
                f"{'minute' if looks == 1 else f'{looks} minutes'} (see DEMO_POLICY in training/demo.py)."
            )
        try:
            wait_for_server(url.rstrip("/"))
        except GatewayUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Demo: customers arrive at {url} (about {per_minute:g} a minute).")
        try:
            demo_customers_run(
                url=url.rstrip("/"),
                key=demo_customer_key(assistant=demo),
                per_minute=per_minute,
                feedback_rate=0.8 if feedback_rate is None else feedback_rate,
                correction_rate=correction_rate,
                seed=seed,
                customers=customers,
                log=self.stdout.write,
            )
        except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; `start` stops everyone
            return
