"""The demo that plays itself out: a month of the demo shop's past, then customers arriving live.

Over 400 lines because the history and the live customers share one customer model (questions,
paraphrases, judging the answer), and the story below is what the charts show.

``demo_history_write`` writes a back-dated history on a fresh demo database, so every chart has a real
shape from the first page view. Nothing in it is drawn by hand: customers ask the FAQ's questions (and
paraphrases), the model version routing gives them answers them with the local model, and they judge
the answer against the true one (``customer_feedback``). The story it tells:

* 30 days ago ``demo-v1`` went live on the launch FAQ; customers also ask about three topics it was
  never taught, and some of them correct its wrong answers;
* 18 days ago ``demo-v2`` was trained on that feedback (on top of v1) and A/B tested against v1 for three
  days, analysed once a day by the A/B engine; it then went live;
* from 8 days ago customers start asking about three more topics neither version knows, so v2's success
  rate sags in the last week: the retrain check has a reason to act once the demo goes live.

Timestamps are set after each row is written through the normal services (``interaction_log``,
``feedback_submit``), one day at a time in time order, so ids grow with ``created_at`` as they do live.

``demo_customers_run`` then keeps customers arriving **through the gateway over HTTP**, as any app would:
the ``openai`` SDK for the chat (half of them streamed), ``POST /api/v1/feedback`` for their verdict.
Customers have sticky references and some come back; a share of wrong answers gets a correction.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from assistants.backends import answer_many
from assistants.backends.local import LocalRetrievalModel
from assistants.backends.quality import CORRECT_AT, answer_quality
from assistants.models import ApiKey, Assistant, Deployment, ModelVersion
from feedback.models import Feedback, Interaction
from feedback.services import feedback_submit, interaction_log
from training.demo_data import later_topics, launch_topics, topic_questions

HISTORY_DAYS = 30
RETRAIN_DAYS_AGO = 18  # demo-v2 trained, A/B test starts
AB_DAYS = 3  # ... and ends, v2 goes live
HISTORY_AB_MIN_SAMPLE = 25  # per arm, before the history's A/B test may decide
LATE_TOPICS_DAYS_AGO = 8  # topics no version knows start to be asked
HISTORY_PER_DAY = 60  # customers on a weekday; weekends are quieter
HISTORY_FEEDBACK_RATE = 0.6
CORRECTION_RATE = 0.5  # of wrong answers that got feedback
RETURNING_SHARE = 0.35  # of customers who have asked before


def rating_for(quality: float) -> int:
    """How a customer rates an answer of this quality (1–5)."""
    if quality >= 0.8:
        return 5
    if quality >= CORRECT_AT:
        return 4
    if quality >= 0.25:
        return 2
    return 1


def customer_feedback(
    rng: random.Random, *, text: str, truth: str, correction_rate: float = CORRECTION_RATE
) -> dict[str, Any]:
    """What a customer who knows the true answer says about ``text``: helpful, a rating, maybe a fix."""
    quality = answer_quality(text, truth)
    helpful = quality >= CORRECT_AT
    data: dict[str, Any] = {"helpful": helpful, "rating": rating_for(quality), "confidence": 0.9}
    if not helpful and rng.random() < correction_rate:
        data["corrected_answer"] = truth
    return data


@dataclass
class Crowd:
    """Customers with sticky references; a share of arrivals are people who asked before."""

    rng: random.Random
    returning_share: float = RETURNING_SHARE
    seen: list[str] = field(default_factory=list)
    _next: int = 0

    def arrive(self) -> str:
        if self.seen and self.rng.random() < self.returning_share:
            return self.rng.choice(self.seen)
        self._next += 1
        ref = f"cust-{self.rng.getrandbits(32):08x}-{self._next}"
        self.seen.append(ref)
        return ref


def _question(rng: random.Random, weights: dict[str, float]) -> tuple[str, str]:
    topics = topic_questions()
    names = list(weights)
    topic = rng.choices(names, weights=[weights[n] for n in names])[0]
    return rng.choice(topics[topic])


def topic_weights(days_ago: float) -> dict[str, float]:
    """How often each topic is asked ``days_ago`` days before now (negative: in the future, live)."""
    later = later_topics()
    weights = {topic: 1.0 for topic in launch_topics()}
    for topic in later[:3]:
        weights[topic] = 0.6
    if days_ago <= LATE_TOPICS_DAYS_AGO:
        # ramps from nothing to as common as a launch topic over the last week
        share = min(1.0, (LATE_TOPICS_DAYS_AGO - days_ago) / LATE_TOPICS_DAYS_AGO + 0.15)
        for topic in later[3:]:
            weights[topic] = share
    return weights


# -- the back-dated history ------------------------------------------------------------------------------


def demo_history_write(
    *,
    assistant: Assistant,
    days: int = HISTORY_DAYS,
    per_day: int = HISTORY_PER_DAY,
    seed: int = 0,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write ``days`` of the demo assistant's past (see the module docstring); returns counts.

    Only for a demo assistant that has served nobody yet: raises ``ValueError`` otherwise.
    """
    from abtesting import services as ab

    if Interaction.objects.filter(assistant=assistant).exists():
        raise ValueError(f"'{assistant.slug}' already has interactions; its history is not rewritten.")
    if assistant.live_version is None:
        raise ValueError(f"'{assistant.slug}' has no live version to start the history with.")
    rng = random.Random(seed)
    now = now or timezone.now()
    start = now - timedelta(days=days)
    crowd = Crowd(rng)
    v1 = assistant.live_version
    _backdate_version(v1, start)
    retrain_day = days - RETRAIN_DAYS_AGO
    deploy_day = retrain_day + AB_DAYS
    experiment = None
    totals = {"interactions": 0, "feedback": 0, "corrections": 0}
    for day in range(days):
        day_start = start + timedelta(days=day)
        day_end = min(day_start + timedelta(days=1), now)
        if day == retrain_day:
            v2 = _retrain(assistant=assistant, base=v1, until=day_start, seed=seed)
            _backdate_version(v2, day_start)
            policy = assistant.policy
            experiment = ab.experiment_start(
                assistant=assistant,
                control=v1,
                variant=v2,
                traffic_split=policy.ab_traffic_split,
                # a demo-sized test: three days of a small shop cannot reach the policy's default sample
                min_sample_size=min(policy.ab_min_sample_size, HISTORY_AB_MIN_SAMPLE),
                max_duration_days=AB_DAYS,
                significance_level=policy.ab_significance_level,
                min_improvement=policy.ab_min_improvement,
                now=day_start,
            )
        if day == deploy_day and experiment is not None:
            _conclude_history_test(experiment, now=day_start)
            experiment = None
        counts = _history_day(
            assistant=assistant,
            rng=rng,
            crowd=crowd,
            day_start=day_start,
            day_end=day_end,
            per_day=per_day,
            days_ago=(now - day_start).total_seconds() / 86400,
        )
        for name, value in counts.items():
            totals[name] += value
        if experiment is not None:
            ab.experiment_analyse(experiment=experiment, now=day_end)
        if progress is not None and (day + 1) % 10 == 0:
            progress(f"  history: {day + 1} of {days} days written")
    return totals


def _backdate_version(version: ModelVersion, when: datetime) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(created_at=when)
    Deployment.objects.filter(version=version).update(created_at=when)


def _retrain(*, assistant: Assistant, base: ModelVersion, until: datetime, seed: int) -> ModelVersion:
    """demo-v2: the customers' approved answers and corrections so far, on top of v1, threshold tuned.

    The same learning as the local trainer (fit on top of the live version, threshold tuned on a held-out
    tenth); the demo's later retrains go through the real job pipeline.
    """
    from assistants.backends import load_local_model
    from training.trainers.local import save_version_model

    pairs: dict[str, str] = {}
    rows = (
        Feedback.objects.filter(assistant=assistant, created_at__lt=until)
        .select_related("interaction")
        .order_by("created_at", "id")
    )
    for row in rows:
        question = row.interaction.question
        if row.corrected_answer:
            pairs[question] = row.corrected_answer
        elif row.helpful:
            pairs.setdefault(question, row.interaction.response)
    items = sorted(pairs.items())
    random.Random(seed).shuffle(items)
    cut = max(1, len(items) // 10)
    held_out, train = items[:cut], items[cut:]
    model = LocalRetrievalModel.fit([q for q, _ in train], [a for _, a in train], base=load_local_model(base))
    metrics = model.tune_threshold([q for q, _ in held_out], [a for _, a in held_out])
    metrics.update(train_examples=len(train), note="Demo history: trained on the first weeks' feedback.")
    return save_version_model(model=model, assistant=assistant, base_version=base, metrics=metrics)


def _conclude_history_test(experiment, *, now: datetime) -> None:
    """End the history's A/B test the way the engine decides it; a better variant goes live."""
    from abtesting import services as ab
    from abtesting.models import Experiment
    from assistants.services import deployment_make_live

    ab.experiment_decide(experiment=experiment, now=now)
    if experiment.is_running:
        ab.experiment_stop(
            experiment=experiment, reason="Demo history: ended after its planned three days.", now=now
        )
    experiment.refresh_from_db()
    if experiment.decision == Experiment.Decision.VARIANT_WORSE:
        return
    with transaction.atomic():
        deployment = deployment_make_live(
            version=experiment.variant,
            reason=Deployment.Reason.APPROVAL,
            note=f"Demo history: approved after its A/B test ({experiment.decision or 'stopped'}).",
        )
    Deployment.objects.filter(pk=deployment.pk).update(created_at=now)


def _history_day(
    *,
    assistant: Assistant,
    rng: random.Random,
    crowd: Crowd,
    day_start: datetime,
    day_end: datetime,
    per_day: int,
    days_ago: float,
) -> dict[str, int]:
    from abtesting.routing import route

    assistant.refresh_from_db(fields=["live_version"])
    quiet = 0.6 if day_start.weekday() >= 5 else 1.0
    n = max(1, round(per_day * quiet * rng.uniform(0.85, 1.15)))
    span = (day_end - day_start).total_seconds()
    weights = topic_weights(days_ago)
    arrivals = sorted(day_start + timedelta(seconds=rng.uniform(0, span * 0.97)) for _ in range(n))
    customers = []
    for at in arrivals:
        ref = crowd.arrive()
        question, truth = _question(rng, weights)
        picked = route(assistant=assistant, user_ref=ref)
        customers.append((at, ref, question, truth, picked))
    # one vectorised pass per version instead of one model call per customer
    by_version: dict[int, list[int]] = defaultdict(list)
    for i, (*_, picked) in enumerate(customers):
        by_version[picked.model_version.pk].append(i)
    texts: dict[int, tuple[str, int]] = {}
    for indexes in by_version.values():
        version = customers[indexes[0]][4].model_version
        results = answer_many(
            version=version,
            conversations=[[{"role": "user", "content": customers[i][2]}] for i in indexes],
        )
        for i, result in zip(indexes, results, strict=True):
            texts[i] = (result.text, result.latency_ms)

    logged, given = [], []
    for i, (at, ref, question, truth, picked) in enumerate(customers):
        text, latency = texts[i]
        interaction = interaction_log(
            assistant=assistant,
            request_id=f"hist-{rng.getrandbits(64):016x}",
            messages=[{"role": "user", "content": question}],
            response=text,
            user_ref=ref,
            model_version=picked.model_version,
            latency_ms=latency,
            experiment_id=picked.experiment_id,
            arm=picked.arm or "",
        ).interaction
        interaction.created_at = at
        logged.append(interaction)
        if rng.random() < HISTORY_FEEDBACK_RATE:
            after = min(at + timedelta(seconds=rng.uniform(20, 600)), day_end - timedelta(seconds=1))
            given.append((after, interaction, customer_feedback(rng, text=text, truth=truth)))
    Interaction.objects.bulk_update(logged, ["created_at"], batch_size=500)
    stored = []
    for after, interaction, data in sorted(given, key=lambda g: g[0]):
        feedback = feedback_submit(interaction=interaction, data=data).feedback
        feedback.created_at = after
        stored.append(feedback)
    Feedback.objects.bulk_update(stored, ["created_at"], batch_size=500)
    corrections = sum(1 for *_, data in given if data.get("corrected_answer"))
    return {"interactions": len(logged), "feedback": len(stored), "corrections": corrections}


# -- live customers, through the gateway -----------------------------------------------------------------


class GatewayUnavailable(Exception):
    """The web server did not come up in time."""


def wait_for_server(url: str, *, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/admin/login/", timeout=5):
                return
        except (OSError, urllib.error.URLError) as exc:
            if time.monotonic() > deadline:
                raise GatewayUnavailable(f"{url} did not answer within {timeout:.0f} s: {exc}") from exc
            time.sleep(1)


def demo_customer_key(*, assistant: Assistant) -> str:
    """A fresh ingest key for the simulated customers' app (raw keys are never stored, so one per run)."""
    from assistants.services import api_key_create

    return api_key_create(scope=ApiKey.Scope.INGEST, assistant=assistant, name="demo customers")[1]


def _post_json(url: str, key: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def demo_customers_run(
    *,
    url: str,
    key: str,
    assistant_slug: str = "demo",
    per_minute: float = 30.0,
    feedback_rate: float = 0.8,
    correction_rate: float = CORRECTION_RATE,
    stream_share: float = 0.5,
    seed: int | None = None,
    customers: int | None = None,
    report_every: int = 25,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Customers arrive (Poisson, ``per_minute``) and talk to the gateway at ``url`` until ``customers``
    have come (None: forever). Returns counts per model version: asked, judged, helpful.
    """
    import openai

    # One log line per request from the SDK's HTTP client would drown the web server's own log.
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    rng = random.Random(seed)
    crowd = Crowd(rng)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=2, timeout=60)
    stats: dict[str, dict[str, int]] = defaultdict(lambda: {"asked": 0, "judged": 0, "helpful": 0})
    served = failed = 0
    started = time.monotonic()
    try:
        while customers is None or served + failed < customers:
            ref = crowd.arrive()
            question, truth = _question(rng, topic_weights(-(time.monotonic() - started) / 86400))
            messages = [{"role": "user", "content": question}]
            try:
                text, interaction_id, model = _ask(
                    client, assistant_slug, messages, ref, stream=rng.random() < stream_share
                )
            except openai.OpenAIError as exc:
                failed += 1
                log(f"  customer {ref}: the gateway failed ({type(exc).__name__}: {exc})")
                time.sleep(min(30.0, 2.0 * failed))  # back off while the server restarts or throttles
                continue
            served += 1
            stats[model]["asked"] += 1
            if rng.random() < feedback_rate:
                data = customer_feedback(rng, text=text, truth=truth, correction_rate=correction_rate)
                status = _post_json(
                    f"{url}/api/v1/feedback",
                    key,
                    {"assistant": assistant_slug, "interaction_id": interaction_id, **data},
                    {"Idempotency-Key": f"demo-{interaction_id}"},
                )
                if status in (200, 201):
                    stats[model]["judged"] += 1
                    stats[model]["helpful"] += bool(data["helpful"])
            if report_every and served % report_every == 0:
                log("  demo customers: " + _summary(stats))
            if per_minute > 0:
                time.sleep(rng.expovariate(per_minute / 60.0))  # the customers' arrival rate
    finally:
        client.close()
    return {"served": served, "failed": failed, "versions": {k: dict(v) for k, v in stats.items()}}


def _ask(
    client, model: str, messages: list[dict[str, str]], ref: str, *, stream: bool
) -> tuple[str, int, str]:
    """(answer, interaction id, model version) from the gateway, streamed or not."""
    if not stream:
        completion = client.chat.completions.create(model=model, messages=messages, user=ref)
        return (
            completion.choices[0].message.content or "",
            completion.model_extra["interaction_id"],
            completion.model,
        )
    parts, interaction_id, version = [], None, ""
    for chunk in client.chat.completions.create(model=model, messages=messages, user=ref, stream=True):
        interaction_id, version = chunk.model_extra["interaction_id"], chunk.model
        parts.extend(choice.delta.content or "" for choice in chunk.choices)
    return "".join(parts), interaction_id, version


def _summary(stats: dict[str, dict[str, int]]) -> str:
    parts = []
    for name, s in sorted(stats.items()):
        rate = f"{s['helpful'] / s['judged']:.0%}" if s["judged"] else "n/a"
        parts.append(f"{name} {s['asked']} asked, success {rate}")
    return "; ".join(parts)
