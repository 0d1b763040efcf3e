"""The bases of query-parameter serializers: how a query is read, and how its parameters are documented."""

from __future__ import annotations

import pytest
from rest_framework import exceptions
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from assistants.serializers import QueryChoiceField, QuerySerializer, QueryTextField


class Filters(QuerySerializer):
    name = QueryTextField()
    colour = QueryChoiceField(choices=["", "red", "blue"])
    size = QueryChoiceField(choices=["s", "m"], error_messages={"invalid_choice": "Use size=s or size=m."})


def _parse(query: str) -> dict:
    request = APIView().initialize_request(APIRequestFactory().get(f"/?{query}"))
    return dict(Filters.parse(request))


def test_a_repeated_parameter_counts_with_its_last_value():
    assert _parse("name=a&name=b&size=s&size=m") == {"name": "b", "size": "m"}


def test_text_is_taken_as_sent():
    assert _parse("name=&colour=") == {"name": "", "colour": ""}
    assert _parse("name=%20a%20") == {"name": " a "}


def test_an_empty_value_is_refused_unless_it_is_a_choice():
    with pytest.raises(exceptions.ValidationError) as refused:
        _parse("size=")
    assert refused.value.detail == {"size": ["Use size=s or size=m."]}
    with pytest.raises(exceptions.ValidationError) as refused:
        _parse("colour=green")
    assert refused.value.detail == {"colour": ['"green" is not a valid choice.']}
