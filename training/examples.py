"""The seed's three example assistants, each with a back-dated training history for the track record.

Over 400 lines: three assistants' policies and the one history writer that fits all three.

The seed's "Real-World Examples" configure three assistants: an e-commerce customer support bot (retrain
check daily, at least 50 feedback, success rate 85 %, rating 4.0, approval required), a SaaS product
documentation Q&A (weekly, 100 feedback, 90 %, 4.5, approval and A/B tests) and an internal knowledge base
assistant (weekly, 30 feedback, 75 %, 3.5). ``examples_create`` makes them with those policies and writes
``weeks`` of history, so the track record shows the three side by side on a fresh database
(``manage.py example_assistants``) and in the browser test.

The history is made up but consistent: jobs follow the state machine one at a time, each with a
timeline whose timestamps are where the figures come from; every deployed version is a real local model
made live through ``deployment_make_live``, and its customers' feedback follows its success rate, which
each deployment raised by about the lift its A/B test (or offline evaluation) measured. The jobs, their
timelines, experiments, interactions and feedback are written as rows with their past timestamps, in
bulk: the services stamp "now", run the stages and announce every transition (emails, webhooks), none
of which a history should do. ``training.demo_loop.demo_history_write`` does not fit here: it replays
the demo shop's FAQ through routing and one in-process retrain, and writes no training jobs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from abtesting.models import Experiment
from assistants.backends.local import LocalRetrievalModel
from assistants.models import Assistant, Deployment, ModelVersion
from assistants.services import assistant_create, deployment_make_live
from feedback.models import Feedback, Interaction
from training.models import JobEvent, TrainingJob
from training.services import policy_ensure, policy_update
from training.trainers.local import save_version_model

S = TrainingJob.Status
REVIEWER = "example-reviewer"
REVIEW_REASONS = (
    "Lift too small to be worth a deployment",
    "Answers about refunds got worse in the sample I read",
    "Test overlapped the holiday sale: traffic was not typical",
)
FAILURES = (
    "Training timed out after 3600 s.",
    "The dataset is invalid: 4 examples after filtering, fewer than the 10 a training run needs.",
)


@dataclass(frozen=True)
class Example:
    slug: str
    name: str
    system_prompt: str
    policy: dict[str, Any]
    faq: tuple[tuple[str, str], ...]
    every_days: float  # a job about this often
    base_rate: float  # the first version's success rate
    outcomes: dict[str, float] = field(default_factory=dict)  # weights of how jobs end
    per_day: int = 20  # answers with feedback a day


EXAMPLES: tuple[Example, ...] = (
    Example(
        slug="ecommerce-support",
        name="E-Commerce Customer Support",
        system_prompt="You are a helpful customer service assistant.",
        policy={
            "min_feedback_count": 50,
            "min_success_rate": 0.85,
            "min_avg_rating": 4.0,
            "schedule": "daily",
            "require_approval": True,
        },
        faq=(
            (
                "How can I track my order?",
                "Open My Account > Orders; each shipped order has a tracking link.",
            ),
            ("What is your return policy?", "Unused items can be returned within 30 days for a full refund."),
            ("How long does a refund take?", "Refunds reach your payment method within 5 business days."),
            ("How much does shipping cost?", "Shipping costs 4.95 and is free from 50."),
            ("How do I cancel my order?", "Cancel within an hour of ordering under My Account > Orders."),
        ),
        every_days=5,
        base_rate=0.74,
        outcomes={S.DEPLOYED: 5, S.REJECTED: 3, S.FAILED: 1, S.CANCELLED: 1},
        per_day=24,
    ),
    Example(
        slug="docs-qa",
        name="SaaS Product Documentation Q&A",
        system_prompt="You are a product documentation expert.",
        policy={
            "min_feedback_count": 100,
            "min_success_rate": 0.90,
            "min_avg_rating": 4.5,
            "schedule": "weekly",
            "require_approval": True,
            "ab_enabled": True,
        },
        faq=(
            ("How do I create an API token?", "Go to Settings > API tokens and click New token."),
            ("Which SSO providers do you support?", "SAML 2.0 and OpenID Connect, e.g. Okta and Azure AD."),
            ("How do I export my data?", "Use Settings > Export; you get a ZIP of CSV files by email."),
            ("What are the API rate limits?", "1,000 requests per minute per token."),
            ("How do I invite a teammate?", "Open Members, click Invite and enter their email."),
        ),
        every_days=8,
        base_rate=0.80,
        outcomes={S.DEPLOYED: 3, S.REJECTED: 2, S.FAILED: 1, S.CANCELLED: 0},
        per_day=16,
    ),
    Example(
        slug="knowledge-base",
        name="Internal Knowledge Base Assistant",
        system_prompt="You answer employees' questions from the internal knowledge base.",
        # A small team's traffic is too thin for an A/B test: the offline evaluation decides.
        policy={
            "min_feedback_count": 30,
            "min_success_rate": 0.75,
            "min_avg_rating": 3.5,
            "schedule": "weekly",
            "ab_enabled": False,
        },
        faq=(
            ("How do I book holidays?", "Request them in the HR portal; your manager approves them."),
            ("Where is the VPN guide?", "On the IT wiki under Remote work > VPN."),
            ("How do I claim expenses?", "Upload receipts in the expenses app within 30 days."),
            ("Who do I ask about payroll?", "Write to payroll@ or open an HR ticket."),
            ("How do I get a new laptop?", "Open an IT ticket of type Hardware request."),
        ),
        every_days=9,
        base_rate=0.70,
        outcomes={S.DEPLOYED: 3, S.REJECTED: 1, S.FAILED: 1, S.CANCELLED: 1},
        per_day=8,
    ),
)


def examples_create(
    *, weeks: int = 12, now: datetime | None = None, seed: int = 13, per_day: int | None = None
) -> dict[str, dict[str, int] | None]:
    """Create the seed's example assistants that do not exist yet, each with ``weeks`` of history.

    Returns per slug what was written (jobs, feedback), or None for an example that already existed
    (left as it is). ``per_day`` overrides each example's answers with feedback a day (tests use fewer).
    """
    now = now or timezone.now()
    reviewer = _reviewer()
    written: dict[str, dict[str, int] | None] = {}
    for index, example in enumerate(EXAMPLES):
        if Assistant.objects.filter(slug=example.slug).exists():
            written[example.slug] = None
            continue
        with transaction.atomic():
            history = _History(
                example, reviewer=reviewer, now=now, weeks=weeks, rng=random.Random(seed + index)
            )
            written[example.slug] = history.write(per_day=per_day or example.per_day)
    return written


def _reviewer():
    """The reviewer the histories' decisions are in the name of: a user who cannot sign in."""
    user, created = get_user_model().objects.get_or_create(
        username=REVIEWER, defaults={"is_active": False, "first_name": "Example", "last_name": "Reviewer"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


class _History:
    """One example assistant's past, written oldest first."""

    def __init__(self, example: Example, *, reviewer, now: datetime, weeks: int, rng: random.Random) -> None:
        self.example = example
        self.reviewer = reviewer
        self.now = now
        self.start = now - timedelta(weeks=weeks)
        self.rng = rng
        self.ab = example.policy.get("ab_enabled", True)
        self.assistant: Assistant
        self.live: ModelVersion
        self.rates: dict[int, float] = {}  # version id -> its customers' success rate
        self.live_from: list[tuple[datetime, ModelVersion]] = []
        self.events: list[JobEvent] = []
        self.trained = 2  # FAQ pairs the last version knows

    def write(self, *, per_day: int) -> dict[str, int]:
        e = self.example
        self.assistant = assistant_create(slug=e.slug, name=e.name, system_prompt=e.system_prompt)
        policy_update(policy=policy_ensure(assistant=self.assistant), **e.policy)
        self.live = self._version(base=None, at=self.start)
        self._deploy(
            self.live, at=self.start, reason=Deployment.Reason.INITIAL, user=None, note="Launch FAQ."
        )
        self.rates[self.live.pk] = e.base_rate
        jobs = 0
        at = self.start + timedelta(days=self.rng.uniform(1, e.every_days))
        while at < self.now - timedelta(days=1):
            ended = self._job(at)
            jobs += 1
            at = max(ended, at) + timedelta(days=self.rng.uniform(0.6, 1.4) * e.every_days)
        JobEvent.objects.bulk_create(self.events)
        feedback = self._feedback(per_day)
        return {"jobs": jobs, "feedback": feedback}

    # -- versions and deployments ----------------------------------------------------------------------

    def _version(self, *, base: ModelVersion | None, at: datetime) -> ModelVersion:
        """A real local model on the FAQ pairs learnt so far (each retrain knows one more)."""
        self.trained = min(len(self.example.faq), self.trained + (1 if base is not None else 0))
        pairs = self.example.faq[: self.trained]
        model = LocalRetrievalModel.fit([q for q, _ in pairs], [a for _, a in pairs])
        version = save_version_model(
            model=model, assistant=self.assistant, base_version=base, metrics={"train_examples": len(pairs)}
        )
        ModelVersion.objects.filter(pk=version.pk).update(created_at=at)
        return version

    def _deploy(self, version: ModelVersion, *, at: datetime, reason: str, user, note: str) -> None:
        deployment = deployment_make_live(version=version, reason=reason, user=user, note=note)
        Deployment.objects.filter(pk=deployment.pk).update(created_at=at)
        self.live_from.append((at, version))
        self.live = version

    # -- one job ---------------------------------------------------------------------------------------

    def _job(self, t0: datetime) -> datetime:
        """Write one job triggered at ``t0`` and its timeline; returns when it ended."""
        e, rng = self.example, self.rng
        outcome = rng.choices(list(e.outcomes), weights=list(e.outcomes.values()))[0]
        is_last = t0 > self.now - timedelta(days=e.every_days)
        awaiting_now = is_last and e.slug == EXAMPLES[0].slug  # one job waits for a reviewer today
        trigger = rng.choice([TrainingJob.Trigger.SCHEDULED, TrainingJob.Trigger.THRESHOLD])
        job = TrainingJob.objects.create(
            assistant=self.assistant,
            trigger=trigger,
            status=S.PENDING,
            base_version=self.live,
            reasons=[
                f"{rng.randint(e.policy['min_feedback_count'], 3 * e.policy['min_feedback_count'])} "
                "feedback since the last deployment"
            ],
            created_at=t0,
            started_at=t0 + timedelta(minutes=1),
            updated_at=t0,
        )
        self._event(job, "", S.PENDING, t0, f"Created ({trigger}).")
        t = t0 + timedelta(minutes=1)
        self._event(job, S.PENDING, S.PREPARING, t)
        t += timedelta(minutes=rng.uniform(1, 4))
        self._event(job, S.PREPARING, S.TRAINING, t)
        if outcome == S.FAILED and not awaiting_now:
            t += timedelta(minutes=rng.uniform(5, 60))
            error = rng.choice(FAILURES)
            self._event(job, S.TRAINING, S.FAILED, t, error)
            return self._end(job, S.FAILED, t, error=error)
        t += timedelta(minutes=rng.uniform(15, 90))
        candidate = self._version(base=self.live, at=t)
        self._event(job, S.TRAINING, S.EVALUATING, t, f"{candidate.name} trained.")
        lift = rng.uniform(0.02, 0.12) if outcome == S.DEPLOYED or awaiting_now else rng.uniform(-0.08, 0.03)
        half = rng.uniform(0.03, 0.06)
        t += timedelta(minutes=rng.uniform(3, 12))
        fields: dict[str, Any] = {"new_model_version": candidate, "metrics": {"train_examples": self.trained}}
        if self.ab:
            self._event(job, S.EVALUATING, S.TESTING, t, "Starting an A/B test against the live version.")
            ended = t + timedelta(days=rng.uniform(2, 5))
            experiment = self._experiment(candidate, lift, half, started=t, ended=ended)
            fields.update(experiment=experiment, ab_test_results=experiment.last_analysis["ab_test_results"])
            source = S.TESTING
            t = ended
            if outcome == S.REJECTED and lift + half < 0 and not awaiting_now:
                reason = f"The A/B test rules the candidate out (A/B test {experiment.pk}, variant worse)."
                self._event(job, source, S.REJECTED, t, f"Rejected: {reason}")
                return self._end(job, S.REJECTED, t, decision_reason=reason, **fields)
        else:
            fields["evaluation"] = {
                "prompts": 60,
                "improvement": lift,
                "improvement_ci": [lift, lift - half, lift + half],
            }
            source = S.EVALUATING
        if outcome == S.DEPLOYED and lift - half >= 0.15:  # the policy's auto-deploy threshold
            return self._deployed(job, candidate, source, t, lift, user=None, **fields)
        self._event(job, source, S.AWAITING_APPROVAL, t, "Awaiting a reviewer's approval.")
        if awaiting_now:
            self._save(job, S.AWAITING_APPROVAL, t, deadline_at=t + timedelta(days=14), **fields)
            return self.now
        t += timedelta(hours=rng.uniform(0.5, 30))
        if outcome == S.CANCELLED:
            self._event(
                job, S.AWAITING_APPROVAL, S.CANCELLED, t, f"Cancelled by {REVIEWER}.", user=self.reviewer
            )
            return self._end(job, S.CANCELLED, t, decided_by=self.reviewer, **fields)
        if outcome == S.REJECTED:
            reason = rng.choice(REVIEW_REASONS)
            self._event(
                job,
                S.AWAITING_APPROVAL,
                S.REJECTED,
                t,
                f"Rejected by {REVIEWER}: {reason}",
                user=self.reviewer,
            )
            return self._end(job, S.REJECTED, t, decided_by=self.reviewer, decision_reason=reason, **fields)
        return self._deployed(job, candidate, S.AWAITING_APPROVAL, t, lift, user=self.reviewer, **fields)

    def _deployed(self, job, candidate, source: str, t: datetime, lift: float, *, user, **fields) -> datetime:
        reason = Deployment.Reason.APPROVAL if user is not None else Deployment.Reason.AUTO_DEPLOY
        why = f"Approved by {REVIEWER}." if user is not None else "Auto-deploy: significant improvement."
        self._event(job, source, S.DEPLOYING, t, why, user=user)
        t += timedelta(minutes=self.rng.uniform(1, 5))
        self._deploy(candidate, at=t, reason=reason, user=user, note=f"Training job {job.pk}.")
        self.rates[candidate.pk] = min(0.97, self.rates[job.base_version_id] * (1 + lift))
        self._event(job, S.DEPLOYING, S.DEPLOYED, t, f"{candidate.name} is live ({reason}).", user=user)
        return self._end(job, S.DEPLOYED, t, decided_by=user, **fields)

    def _experiment(self, candidate: ModelVersion, lift: float, half: float, *, started, ended) -> Experiment:
        low, high = lift - half, lift + half
        control = self.rates[self.live.pk]
        decision = "variant_better" if low > 0 else "variant_worse" if high < 0 else "no_difference"
        results = {
            "controlSuccessRate": control,
            "variantSuccessRate": min(1.0, control * (1 + lift)),
            "improvement": lift,
            "improvementLow": low,
            "improvementHigh": high,
            "ci": [low, high],
            "ciLevel": 0.95,
            "significant": decision != "no_difference",
            "unit": "user",
            "sampleSize": self.rng.randint(200, 600),
            "pValue": None,
            "method": "group_sequential",
        }
        return Experiment.objects.create(
            assistant=self.assistant,
            control=self.live,
            variant=candidate,
            status=Experiment.Status.CONCLUDED,
            decision=decision,
            decision_reason=f"Example history: relative lift {lift:+.1%}.",
            last_analysis={
                "ab_test_results": results,
                "relative_lift": lift,
                "alpha": 0.05,
                "final_look": True,
            },
            analysed_at=ended,
            started_at=started,
            ended_at=ended,
        )

    def _event(self, job, source: str, target: str, at: datetime, message: str = "", user=None) -> None:
        self.events.append(
            JobEvent(
                job=job,
                kind=JobEvent.Kind.TRANSITION,
                from_status=source,
                to_status=target,
                message=message,
                user=user,
                created_at=at,
            )
        )

    def _end(self, job, status: str, at: datetime, **fields) -> datetime:
        self._save(job, status, at, finished_at=at, deadline_at=None, **fields)
        return at

    @staticmethod
    def _save(job, status: str, at: datetime, **fields) -> None:
        TrainingJob.objects.filter(pk=job.pk).update(status=status, updated_at=at, **fields)

    # -- customers' feedback ----------------------------------------------------------------------------

    def _feedback(self, per_day: int) -> int:
        """Each day's answers with feedback, by the version live then, successful at its rate."""
        rng, faq = self.rng, self.example.faq
        interactions, verdicts = [], []
        day = self.start
        while day < self.now:
            quiet = 0.5 if day.weekday() >= 5 else 1.0
            for _ in range(max(1, round(per_day * quiet * rng.uniform(0.8, 1.2)))):
                at = day + timedelta(seconds=rng.uniform(0, 86_000))
                if at >= self.now:
                    continue
                version = next(v for since, v in reversed(self.live_from) if since <= at)
                question, answer = rng.choice(faq)
                good = rng.random() < self.rates[version.pk]
                interactions.append(
                    Interaction(
                        assistant=self.assistant,
                        model_version=version,
                        created_at=at,
                        request_id=f"example-{rng.getrandbits(64):016x}",
                        user_ref=f"u{rng.randint(1, 400)}",
                        messages=[{"role": "user", "content": question}],
                        response=answer if good else "Sorry, I could not find that.",
                    )
                )
                verdicts.append((at + timedelta(minutes=rng.uniform(1, 10)), good))
            day += timedelta(days=1)
        order = sorted(range(len(interactions)), key=lambda i: interactions[i].created_at)
        interactions = Interaction.objects.bulk_create([interactions[i] for i in order], batch_size=500)
        verdicts = [verdicts[i] for i in order]
        Feedback.objects.bulk_create(
            [
                Feedback(
                    interaction=row,
                    assistant=self.assistant,
                    kind=Feedback.Kind.THUMBS,
                    helpful=good,
                    rating=5 if good else 2,
                    confidence=0.9,
                    created_at=at,
                )
                for row, (at, good) in zip(interactions, verdicts, strict=True)
            ],
            batch_size=500,
        )
        return len(verdicts)
