"""Writes for assistants, model versions, deployments and API keys."""

from __future__ import annotations

import base64
import logging
import re
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from assistants.exceptions import RollbackError
from assistants.models import ApiKey, Assistant, Deployment, ModelVersion
from assistants.selectors import rollback_target

logger = logging.getLogger(__name__)


def assistant_create(*, slug: str, name: str, system_prompt: str = "") -> Assistant:
    return Assistant.objects.create(slug=slug, name=name, system_prompt=system_prompt)


def model_version_create(
    *,
    assistant: Assistant,
    name: str,
    backend: str = ModelVersion.Backend.LOCAL,
    provider_model: str = "",
    artifact: str = "",
    artifact_sha256: str = "",
    base_version: ModelVersion | None = None,
    metrics: dict | None = None,
) -> ModelVersion:
    return ModelVersion.objects.create(
        assistant=assistant,
        name=name,
        backend=backend,
        provider_model=provider_model,
        artifact=artifact,
        artifact_sha256=artifact_sha256,
        base_version=base_version,
        metrics=metrics or {},
    )


def next_version_name(assistant: Assistant) -> str:
    """``<slug>-v<N>``, one more than the number of versions the assistant has had."""
    return f"{assistant.slug}-v{assistant.versions.count() + 1}"


@transaction.atomic
def deployment_make_live(
    *,
    version: ModelVersion,
    reason: str,
    user: AbstractBaseUser | None = None,
    note: str = "",
) -> Deployment:
    """Make ``version`` the assistant's live version: retire the old one and record a Deployment.

    The assistant row is locked so two deployments of one assistant serialise.
    """
    assistant = Assistant.objects.select_for_update().get(pk=version.assistant_id)
    previous = assistant.live_version
    if previous is not None and previous.pk != version.pk:
        ModelVersion.objects.filter(pk=previous.pk).update(status=ModelVersion.Status.RETIRED)
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.LIVE)
    version.status = ModelVersion.Status.LIVE
    assistant.live_version = version
    assistant.save(update_fields=("live_version",))
    deployment = Deployment.objects.create(
        assistant=assistant,
        version=version,
        previous_version=previous if previous and previous.pk != version.pk else None,
        reason=reason,
        traffic_share=1.0,
        note=note,
        user=user if user is not None and user.is_authenticated else None,
        created_at=timezone.now(),
    )
    _log_deployment(deployment)
    return deployment


def deployment_record_stage(
    *, version: ModelVersion, traffic_share: float, note: str = "", user: AbstractBaseUser | None = None
) -> Deployment:
    """A progressive-rollout stage: ``version`` now gets ``traffic_share`` of traffic, live keeps the rest."""
    assistant = version.assistant
    deployment = Deployment.objects.create(
        assistant=assistant,
        version=version,
        previous_version=assistant.live_version,
        reason=Deployment.Reason.ROLLOUT_STAGE,
        traffic_share=traffic_share,
        note=note,
        user=user if user is not None and user.is_authenticated else None,
    )
    _log_deployment(deployment)
    return deployment


def _log_deployment(deployment: Deployment) -> None:
    """One line per deployment, once it is committed (a rolled-back one did not happen)."""
    previous = deployment.previous_version.name if deployment.previous_version else None
    message = "Assistant %s: %s gets %.0f%% of traffic (%s; before: %s)"
    args = (deployment.assistant.slug, deployment.version.name, deployment.traffic_share * 100)
    args += (deployment.reason, previous or "none")
    fields = {
        "deployment_id": deployment.pk,
        "assistant": deployment.assistant.slug,
        "assistant_id": deployment.assistant_id,
        "version": deployment.version.name,
        "previous_version": previous,
        "reason": deployment.reason,
        "traffic_share": deployment.traffic_share,
    }
    transaction.on_commit(lambda: logger.info(message, *args, extra=fields))


@transaction.atomic
def deployment_rollback(
    *,
    assistant: Assistant,
    expected_live: str | None = None,
    user: AbstractBaseUser | None = None,
    note: str = "",
) -> Deployment:
    """Return to the version that was live before the current one.

    ``expected_live`` is the name of the live version the caller saw. The rollback's own deployment has a
    previous version too, so a second rollback would roll forward again: with ``expected_live`` a
    repeated click or retried request fails (RollbackError) instead. Without it the call is not
    retry-safe.
    """
    assistant = Assistant.objects.select_for_update().get(pk=assistant.pk)
    live_name = assistant.live_version.name if assistant.live_version else None
    if expected_live is not None and expected_live != live_name:
        raise RollbackError(
            f"'{assistant.slug}' is now running {live_name or 'no version'}, not {expected_live}: "
            "someone rolled back or deployed meanwhile. Reload and check before rolling back again."
        )
    target = rollback_target(assistant=assistant)
    if target is None:
        raise RollbackError(f"'{assistant.slug}' has no earlier version to roll back to.")
    return deployment_make_live(
        version=target,
        reason=Deployment.Reason.ROLLBACK,
        user=user,
        note=note or f"Rolled back from {assistant.live_version.name}.",
    )


_ORIGIN_RE = re.compile(r"^(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?(?:[/?#]\S*)?\Z")


def origin_normalise(origin: str) -> str:
    """``origin`` as browsers send it in the Origin header: lowercase ``scheme://host[:port]``.

    A path (a pasted page URL) is dropped; anything else that is not an origin is refused.

    The origin check compares strings, so ``https://Shop.example/`` stored as typed would never match.
    """
    value = origin.strip().lower()
    match = _ORIGIN_RE.match(value)
    if match is None:
        raise ValueError(
            f"'{origin}' is not a browser origin: write it as scheme://host[:port], "
            "e.g. https://shop.example or http://localhost:8000."
        )
    scheme, host, port = match.groups()
    # Browsers leave out the default port.
    if port in (":80", ":443") and port == {"http": ":80", "https": ":443"}[scheme]:
        port = None
    return f"{scheme}://{host}{port or ''}"


def api_key_create(
    *,
    scope: str,
    assistant: Assistant | None = None,
    name: str = "",
    allowed_origins: list[str] | None = None,
    user: AbstractBaseUser | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never stored and cannot be shown again."""
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"Unknown scope '{scope}': use one of {', '.join(ApiKey.Scope.values)}.")
    if allowed_origins and scope != ApiKey.Scope.INGEST:
        raise ValueError("Only ingest keys may be used from browsers (allowed origins); they are public.")
    origins = [origin_normalise(origin) for origin in allowed_origins or []]
    raw = f"tl_{scope[:2]}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        name=name,
        prefix=raw[:10],
        hashed_key=ApiKey.hash(raw),
        scope=scope,
        assistant=assistant,
        allowed_origins=origins,
        user=user,
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_publishable_derived(
    *, purpose: str, assistant: Assistant, allowed_origins: list[str], name: str = ""
) -> tuple[ApiKey, str]:
    """A publishable ingest key that a page of our own can show on every visit without storing it.

    The raw key is an HMAC of ``purpose`` and the assistant under SECRET_KEY (as unguessable as a random
    key to anyone without the secret); its row is made on first use. Such a key sits in the page anyway,
    and a publishable key only sends feedback that carries an interaction's feedback token. A revoked
    key stays revoked (the row is found, not made again); a new SECRET_KEY derives a new key.
    """
    mac = salted_hmac(f"trainloop.apikey.{purpose}", str(assistant.pk), algorithm="sha256").digest()
    raw = f"tl_in_{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    key, _ = ApiKey.objects.get_or_create(
        hashed_key=ApiKey.hash(raw),
        defaults=dict(
            name=name or purpose,
            prefix=raw[:10],
            scope=ApiKey.Scope.INGEST,
            assistant=assistant,
            allowed_origins=[origin_normalise(origin) for origin in allowed_origins],
        ),
    )
    return key, raw
