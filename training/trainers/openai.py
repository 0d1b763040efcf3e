"""Fine-tuning on an OpenAI-compatible provider (backend "openai").

(Just over 400 lines: one provider protocol, create, follow and cancel, with its restart-safe bookkeeping.)

Protocol (OpenAI's fine-tuning API through the official SDK):

1. ``start``: take one of the provider's concurrency slots (``training.trainers.slots``; none free: wait
   and ask again at the next poll), upload the dataset's train and validation JSONL
   (``files.create(purpose="fine-tune")``; once per dataset, shared by a comparison's candidates), then
   ``fine_tuning.jobs.create(model, training_file, validation_file, suffix=<assistant slug>, seed=<job id>,
   method=supervised + hyperparameters, metadata={"trainloop_job": <job id>[, "trainloop_candidate":
   <candidate id>]})`` and store ``provider_job_id`` at once.
2. ``poll`` (every ``poll_after`` seconds, by the orchestrator): ``retrieve`` the provider job, copy new
   provider events into the job timeline (each once: ``provider_event_id`` is unique per job), turn metric
   events into the ``loss_curve`` series and checkpoints into job metrics; on ``succeeded`` register the
   fine-tuned model as a candidate ``ModelVersion``.
3. ``cancel``: ``fine_tuning.jobs.cancel`` (the orchestrator calls it when ``training_timeout`` passes).

Robustness:

* Transient provider trouble (429, 5xx, connection errors, timeouts) never fails a job: the SDK retries
  twice, then we answer ``running`` with an exponential backoff (``BACKOFF_BASE`` doubling up to
  ``BACKOFF_CAP``) and note the retry in the timeline. Only the orchestrator's timeout ends such a job.
* Restart-safe: the uploaded file ids and the provider job id are saved as soon as they exist, so a worker
  that dies mid-start resumes instead of uploading or creating twice. If it died between
  ``jobs.create`` and saving the id, the provider job is found again by its ``metadata``.
* Calling ``poll`` again after success returns the same ``ModelVersion`` (found by provider model id).

The subject is a single job or a comparison's candidate (``training.trainers.base.TrainingSubject``):
each has its own provider job, hyperparameters, metrics and version, and the metadata tells the
candidates of one job apart when an orphan is looked for.
"""

from __future__ import annotations

import logging
from pathlib import PurePath
from typing import Any

import openai
from django.core.files.storage import default_storage

from assistants.backends.errors import BackendError
from assistants.backends.openai_chat import client, describe_api_error
from assistants.models import ModelVersion
from assistants.services import model_version_create, next_version_name
from training.models import JobEvent
from training.pipeline import DatasetInvalid
from training.pipeline.erasure import dataset_ready
from training.trainers.base import Target, Trainer, TrainingOutcome, TrainingSubject, as_subject
from training.trainers.slots import STATE, slot_take

logger = logging.getLogger(__name__)

POLL_INTERVAL = 30.0  # seconds between polls while the provider trains (fine-tunes take minutes to hours)
BACKOFF_BASE = 15.0  # first wait after a transient failure; doubles per consecutive failure
BACKOFF_CAP = 600.0
SDK_RETRIES = 2
EVENT_PAGE = 100
CHECKPOINT_METRICS = (
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
CURVE_METRICS = ("train_loss", "valid_loss", "train_mean_token_accuracy", "valid_mean_token_accuracy")
HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
RUNNING_STATES = {"validating_files", "queued", "running", "pending", "created"}

TRANSIENT = (
    openai.RateLimitError,
    openai.APIConnectionError,
    openai.InternalServerError,
)  # includes timeouts


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: rate limits, provider 5xx, network trouble, timeouts."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def describe_job_error(error: Any) -> str:
    """The provider's ``error{code,message,param}`` as one readable sentence."""
    if error is None:
        return "The provider reported the fine-tuning job as failed without a reason."
    get = error.get if isinstance(error, dict) else lambda k, d=None: getattr(error, k, d)
    code, message, param = get("code") or "", (get("message") or "").strip(), get("param") or ""
    if "validation" in code or param == "validation_file":
        what = "The provider rejected the validation file"
    elif "file" in code or param in ("training_file", "file"):
        what = "The provider rejected the training file"
    else:
        what = "The provider failed the fine-tuning job"
    text = f"{what} ({code})" if code else what
    text += f": {message}" if message else "."
    if param:
        text += f" [param: {param}]"
    return text


class OpenAITrainer(Trainer):
    backend = "openai"

    # -- orchestrator entry points -------------------------------------------------------------------

    def start(self, target: Target) -> TrainingOutcome:
        subject = as_subject(target)
        if subject.provider_job_id:  # the worker died after creating the provider job: resume, don't recreate
            subject.note(f"Resuming provider job {subject.provider_job_id}.")
            return self.poll(subject)
        return self._guarded(subject, self._create)

    def poll(self, target: Target) -> TrainingOutcome:
        subject = as_subject(target)
        if not subject.provider_job_id:  # no slot yet, or a transient error before the provider job existed
            return self._guarded(subject, self._create)
        return self._guarded(subject, self._follow)

    def cancel(self, target: Target) -> None:
        subject = as_subject(target)
        provider_job_id = subject.provider_job_id
        if not provider_job_id:
            return
        try:
            api = client(max_retries=SDK_RETRIES)
            api.fine_tuning.jobs.cancel(provider_job_id)
        except BackendError as exc:
            subject.note(f"Could not cancel provider job {provider_job_id}: {exc}")
        except openai.APIStatusError as exc:
            # 400 "already completed": nothing left to cancel.
            subject.note(f"Provider job {provider_job_id} was not cancelled: {describe_api_error(exc)}")
        except openai.OpenAIError as exc:
            subject.note(f"Could not cancel provider job {provider_job_id}: {describe_api_error(exc)}")
        else:
            subject.note(f"Cancelled provider job {provider_job_id}.")

    # -- error policy ---------------------------------------------------------------------------------

    def _guarded(self, subject: TrainingSubject, step) -> TrainingOutcome:
        """Run ``step``; transient errors become a backoff, others a readable failure."""
        try:
            outcome = step(subject)
        except BackendError as exc:  # no key configured
            return TrainingOutcome(TrainingOutcome.FAILED, error=str(exc))
        except openai.OpenAIError as exc:
            if is_transient(exc):
                return self._backoff(subject, exc)
            return TrainingOutcome(TrainingOutcome.FAILED, error=describe_api_error(exc))
        state = subject.state(STATE)
        if state.get("transient_failures"):
            state["transient_failures"] = 0
            subject.state_save()
        return outcome

    def _backoff(self, subject: TrainingSubject, exc: openai.OpenAIError) -> TrainingOutcome:
        state = subject.state(STATE)
        failures = int(state.get("transient_failures", 0)) + 1
        state["transient_failures"] = failures
        state["transient_total"] = int(state.get("transient_total", 0)) + 1
        subject.state_save()
        wait = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1))
        subject.note(
            f"Provider temporarily unavailable ({describe_api_error(exc)}); retry {failures} in {wait:.0f}s.",
            data={"transient_failures": failures, "retry_in_seconds": wait},
        )
        return TrainingOutcome(
            TrainingOutcome.RUNNING,
            metrics={"provider_transient_failures": state["transient_total"]},
            poll_after=wait,
        )

    # -- start ----------------------------------------------------------------------------------------

    def _create(self, subject: TrainingSubject) -> TrainingOutcome:
        # Rebuilt first when a customer in it was erased, so their data is never uploaded.
        dataset = dataset_ready(subject.dataset) if subject.dataset else None
        if dataset is None or not dataset.train_file:
            return TrainingOutcome(
                TrainingOutcome.FAILED, error="The job has no training dataset file to upload."
            )
        if not dataset.is_valid:  # e.g. too few examples left after an erasure's rebuild
            return TrainingOutcome(TrainingOutcome.FAILED, error=str(DatasetInvalid(dataset)))
        if not subject.base_model:
            reason = "No base model to fine-tune: set one in the assistant's retrain policy."
            return TrainingOutcome(TrainingOutcome.FAILED, error=reason)
        waiting = self._slot(subject)
        if waiting is not None:
            return waiting
        api = client(max_retries=SDK_RETRIES)
        existing = self._find_orphan(api, subject)
        if existing is not None:
            subject.provider_job_id_save(existing)
            subject.note(f"Found provider job {existing} created before a restart; following it.")
            return self._follow(subject)

        files = self._uploads(api, subject, dataset)
        settings = subject.settings
        hyper = {k: settings[k] for k in HYPERPARAMETERS if settings.get(k) not in (None, "", "auto")}
        hyper.update(
            {k: v for k, v in (settings.get("hyperparameters") or {}).items() if k in HYPERPARAMETERS}
        )
        params: dict[str, Any] = {
            "model": subject.base_model,
            "training_file": files["training_file"],
            "suffix": subject.assistant.slug[:64],
            # One seed for every candidate of a job: they differ only in what the comparison varies.
            "seed": subject.job.pk,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "metadata": subject.metadata,
        }
        if files.get("validation_file"):
            params["validation_file"] = files["validation_file"]
        provider_job = api.fine_tuning.jobs.create(**params)
        # Save the id before anything else can fail, so a restart resumes this provider job.
        subject.provider_job_id_save(provider_job.id)
        subject.note(
            f"Created provider fine-tuning job {provider_job.id} on {subject.base_model}.",
            data={"provider_job_id": provider_job.id, "hyperparameters": hyper},
        )
        return TrainingOutcome(
            TrainingOutcome.RUNNING,
            metrics={"provider_status": provider_job.status},
            poll_after=POLL_INTERVAL,
        )

    @staticmethod
    def _slot(subject: TrainingSubject) -> TrainingOutcome | None:
        """None once the subject holds one of the provider's slots; else the outcome "waiting"."""
        answer = slot_take(subject)
        state = subject.state(STATE)
        if answer.taken:
            if state.pop("waiting_since", None) is not None:
                subject.state_save()
            return None
        why = (
            f"Waiting for a provider slot: {answer.in_use} of {answer.limit} fine-tuning jobs run at "
            f"{answer.base_url} (TRAINING_PROVIDER_CONCURRENCY)."
        )
        if "waiting_since" not in state:  # noted once, not at every poll
            state["waiting_since"] = True
            subject.state_save()
            subject.note(why)
        return TrainingOutcome(
            TrainingOutcome.RUNNING,
            metrics={"provider_status": "waiting_for_slot"},
            poll_after=POLL_INTERVAL,
            waiting=why,
        )

    def _uploads(self, api: openai.OpenAI, subject: TrainingSubject, dataset) -> dict[str, str]:
        """The dataset's uploaded file ids: uploaded once per dataset version, shared by the candidates."""
        files = subject.shared_state(STATE)
        if files.get("uploaded_sha256", dataset.train_sha256) != dataset.train_sha256:
            # The dataset was rebuilt since (an erased customer): the old upload must not be trained on.
            files.pop("training_file", None)
            files.pop("validation_file", None)
        if not files.get("training_file"):
            files["training_file"] = self._upload(api, subject, dataset.train_file)
            files["uploaded_sha256"] = dataset.train_sha256
            subject.shared_state_save()
        if dataset.validation_file and dataset.validation_count and not files.get("validation_file"):
            files["validation_file"] = self._upload(api, subject, dataset.validation_file)
            subject.shared_state_save()
        return files

    def _upload(self, api: openai.OpenAI, subject: TrainingSubject, path: str) -> str:
        with default_storage.open(path, "rb") as fh:
            data = fh.read()
        uploaded = api.files.create(file=(PurePath(path).name, data), purpose="fine-tune")
        subject.note(f"Uploaded {PurePath(path).name} as {uploaded.id} ({len(data)} bytes).")
        return uploaded.id

    @staticmethod
    def _find_orphan(api: openai.OpenAI, subject: TrainingSubject) -> str | None:
        """A provider job created for this subject whose id we never saved (worker died right after
        create). The metadata names the job and, for a comparison, the candidate."""
        if not subject.job.pk or not subject.shared_state(STATE).get("training_file"):
            return None  # nothing was uploaded, so nothing can have been created
        try:
            page = api.fine_tuning.jobs.list(limit=50)
        except openai.APIStatusError as exc:
            if is_transient(exc):
                raise
            return None  # a provider that cannot list jobs: the saved id is all we can go by
        wanted = subject.metadata
        for found in page.data:
            tags = {k: v for k, v in (found.metadata or {}).items() if k.startswith("trainloop_")}
            if tags == wanted:
                return found.id
        return None

    # -- poll -----------------------------------------------------------------------------------------

    def _follow(self, subject: TrainingSubject) -> TrainingOutcome:
        api = client(max_retries=SDK_RETRIES)
        provider_job = api.fine_tuning.jobs.retrieve(subject.provider_job_id)
        metrics = dict(subject.metrics)
        self._sync_events(api, subject, metrics)
        self._read_checkpoints(api, subject, metrics)
        metrics["provider_status"] = provider_job.status
        status = provider_job.status
        if status == "succeeded":
            metrics["trained_tokens"] = provider_job.trained_tokens
            metrics["provider_model"] = provider_job.fine_tuned_model
            hyper = getattr(provider_job, "hyperparameters", None)
            if hyper is not None:
                metrics["hyperparameters"] = hyper.model_dump(exclude_none=True)
            if not provider_job.fine_tuned_model:
                return TrainingOutcome(
                    TrainingOutcome.FAILED,
                    metrics=metrics,
                    error="The provider finished without a fine-tuned model id.",
                )
            version = self._register_version(subject, provider_job.fine_tuned_model, metrics)
            return TrainingOutcome(TrainingOutcome.SUCCEEDED, model_version=version, metrics=metrics)
        if status == "failed":
            return TrainingOutcome(
                TrainingOutcome.FAILED, metrics=metrics, error=describe_job_error(provider_job.error)
            )
        if status == "cancelled":
            return TrainingOutcome(
                TrainingOutcome.CANCELLED, metrics=metrics, error="The provider job was cancelled."
            )
        return TrainingOutcome(TrainingOutcome.RUNNING, metrics=metrics, poll_after=POLL_INTERVAL)

    def _sync_events(self, api: openai.OpenAI, subject: TrainingSubject, metrics: dict[str, Any]) -> None:
        """Record provider events not yet in the timeline, oldest first; extend the loss curve."""
        # Events come newest first and ``after`` pages towards older ones: read until an event we
        # already recorded shows up (or the history ends).
        known = set(
            subject.events().exclude(provider_event_id="").values_list("provider_event_id", flat=True)
        )
        fresh: list[Any] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": EVENT_PAGE}
            if after:
                kwargs["after"] = after
            page = api.fine_tuning.jobs.list_events(subject.provider_job_id, **kwargs)
            reached_known = False
            for event in page.data:
                if event.id in known:
                    reached_known = True
                    break
                fresh.append(event)
            if reached_known or not page.has_more or not page.data:
                break
            after = page.data[-1].id
        for event in reversed(fresh):
            data = dict(event.data or {}) if isinstance(event.data, dict) else {}
            is_metric = getattr(event, "type", "") == "metrics" or "train_loss" in data
            subject.record(
                kind=JobEvent.Kind.METRIC if is_metric else JobEvent.Kind.PROVIDER,
                message=event.message,
                data={**data, "level": event.level, "created_at": event.created_at},
                provider_event_id=event.id,
            )
        # The curve is rebuilt from the recorded events, so it is complete even if an earlier poll's
        # metrics were never saved (a worker died between recording events and saving the job).
        curve: dict[int, dict[str, Any]] = {}
        rows = subject.events().filter(kind=JobEvent.Kind.METRIC).exclude(provider_event_id="")
        for data in rows.values_list("data", flat=True):
            if not isinstance(data, dict) or data.get("step") is None:
                continue
            step = int(data["step"])
            curve[step] = {"step": step, **{k: data.get(k) for k in CURVE_METRICS}}
            if data.get("total_steps"):
                metrics["total_steps"] = data["total_steps"]
        if curve:
            metrics["loss_curve"] = [curve[step] for step in sorted(curve)]

    @staticmethod
    def _read_checkpoints(api: openai.OpenAI, subject: TrainingSubject, metrics: dict[str, Any]) -> None:
        """The latest checkpoint's metrics become the subject's headline metrics (``train_loss`` …)."""
        page = api.fine_tuning.jobs.checkpoints.list(subject.provider_job_id, limit=10)
        checkpoints = sorted(page.data, key=lambda c: c.step_number)
        if not checkpoints:
            return
        metrics["checkpoints"] = [
            {
                "id": c.id,
                "step": c.step_number,
                "model": c.fine_tuned_model_checkpoint,
                **{
                    k: v
                    for k, v in c.metrics.model_dump().items()
                    if k in CHECKPOINT_METRICS and v is not None
                },
            }
            for c in checkpoints
        ]
        latest = checkpoints[-1].metrics.model_dump()
        for name in CHECKPOINT_METRICS:
            if latest.get(name) is not None:
                metrics[name] = latest[name]
        metrics["step"] = checkpoints[-1].step_number

    @staticmethod
    def _register_version(
        subject: TrainingSubject, provider_model: str, metrics: dict[str, Any]
    ) -> ModelVersion:
        assistant = subject.assistant
        existing = ModelVersion.objects.filter(
            assistant_id=assistant.pk, backend=ModelVersion.Backend.OPENAI, provider_model=provider_model
        ).first()
        if existing is not None:  # polled again after success (retried task): same version, not a second one
            return existing
        headline = {k: metrics[k] for k in (*CHECKPOINT_METRICS, "trained_tokens", "step") if k in metrics}
        return model_version_create(
            assistant=assistant,
            name=next_version_name(assistant),
            backend=ModelVersion.Backend.OPENAI,
            provider_model=provider_model,
            base_version=subject.base_version,
            metrics={**headline, "provider_job_id": subject.provider_job_id},
        )
