"""Pages of the API's lists: ``{"next", "previous", "results"}``, linked by cursors (DRF's cursor pagination).

A cursor marks a place in a fixed order (newest first: a row's timestamp, then its id), not a page
number, so following ``next`` from the first page visits each row once even while rows are added: a new
row is newer than the first page and does not shift the pages after it. No page counts the table.

A list view sets ``pagination_class`` to a subclass naming its order and answers with
``paginated_response``; drf-spectacular then documents the ``cursor`` and ``limit`` parameters and the
page object. ``limit`` keeps its meaning (rows per page, a number out of range brought into it), and a
malformed ``limit`` or a cursor the API did not issue is a 400 that says what to send instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
LIMIT_HELP = f"Use a number from 1 to {MAX_LIMIT}."
CURSOR_HELP = (
    "Not a cursor this API gave out: follow the `next` or `previous` link of a page as it is, or leave "
    "`cursor` out for the first page."
)


class ListPagination(CursorPagination):
    """Cursor pages of ``limit`` rows (default 50, at most 200); subclasses set ``ordering``.

    The ordering's first field places the cursor and must not change once a row exists (a creation
    timestamp); the id after it breaks ties, which DRF steps over with an offset.
    """

    page_size = DEFAULT_LIMIT
    max_page_size = MAX_LIMIT
    page_size_query_param = "limit"
    page_size_query_description = (
        f"Rows per page, {DEFAULT_LIMIT} by default: a number from 1 to {MAX_LIMIT} (one outside is "
        "brought into that range)."
    )
    cursor_query_description = (
        "Where the page starts. Leave it out for the first page (the newest rows); the `next` and "
        "`previous` links of each page carry it."
    )
    ordering: tuple[str, ...] = ()
    # JSON only: no page controls for a browsable API.
    template = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.ordering or cls.ordering[-1] not in ("id", "-id"):
            raise TypeError(f"{cls.__name__}.ordering must end with the id, the tie-breaker of a cursor")

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        field = serializers.IntegerField(
            error_messages={"invalid": LIMIT_HELP, "max_string_length": LIMIT_HELP}
        )
        try:
            value = field.run_validation(raw)
        except exceptions.ValidationError as exc:
            raise exceptions.ValidationError({self.page_size_query_param: exc.detail}) from None
        return min(max(value, 1), self.max_page_size)

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: APIView | None = None) -> list:
        # The field whose value a cursor's position is (checked by decode_cursor).
        self.position_field = queryset.model._meta.get_field(self.ordering[0].lstrip("-"))
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request):
        # `?cursor=` is refused, not read as the first page: a client that appends an empty cursor at the
        # end of a list would otherwise start over forever.
        if request.query_params.get(self.cursor_query_param) == "":
            raise self.invalid_cursor()
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise self.invalid_cursor() from None
        if cursor is not None and cursor.position is not None and not self.is_position(cursor.position):
            raise self.invalid_cursor()
        return cursor

    def is_position(self, position: str) -> bool:
        """Whether ``position`` is a value the API could have put in a cursor.

        DRF filters by it as it comes; a hand-made one could be no timestamp at all, a naive one, or one
        that leaves datetime's range in UTC (which SQLite, storing UTC, would fail on and PostgreSQL not).
        """
        try:
            value = self.position_field.to_python(position)
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    return False
                value.astimezone(UTC)
        except (DjangoValidationError, OverflowError):
            return False
        return True

    def invalid_cursor(self) -> exceptions.ValidationError:
        return exceptions.ValidationError({self.cursor_query_param: [CURSOR_HELP]})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "The next page (older rows); null on the last page."},
                "previous": {**link, "description": "The page before (newer rows); null on the first."},
                "results": {**schema, "description": "Newest first."},
            },
        }


def paginated_response(
    view: APIView, request: Request, queryset: QuerySet, serializer_class: type[serializers.Serializer]
) -> Response:
    """One page of ``queryset`` in ``view``'s ``pagination_class``, each row by ``serializer_class``."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
