"""One error shape for the whole API: ``{"detail": "...", "errors": {...}}``, never a 500 for bad input."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from assistants.api_parsers import BodyRefused, PayloadTooLarge, body_limit, too_large_message
from assistants.exceptions import DomainError


def api_exception(exc: Exception) -> Exception:
    """Django's own refusals that mean bad input, and the services' domain errors, as the API exceptions
    that answer them."""
    if isinstance(exc, RequestDataTooBig):
        # DRF reads the body through ``request.body``, which refuses more than the limit.
        return PayloadTooLarge(too_large_message(body_limit()))
    if isinstance(exc, DomainError):
        answer = exceptions.APIException(str(exc))
        answer.status_code = exc.status_code
        return answer
    return exc


def exception_handler(exc, context):
    exc = api_exception(exc)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, BodyRefused):
        return Response({"detail": str(exc.detail)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        return Response(
            {"detail": f"The request body is not valid JSON: {exc.detail}"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data
        if isinstance(errors, list):
            errors = {"non_field_errors": errors}
        response.data = {"detail": "Invalid input: see `errors` for what to fix.", "errors": errors}
    elif isinstance(exc, Http404) and "detail" not in (response.data or {}):
        response.data = {"detail": "Not found."}
    return response
