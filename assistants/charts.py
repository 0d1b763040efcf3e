"""Who may fetch a chart's JSON: one base for every chart view of the product.

A dashboard page fetches its charts with the reviewer's session; a customer's own page (an intranet's
success-rate trend, say) fetches them from its server with a read-scope API key. Both reach the same
view, with the API's rules: the key's scope and origin as every read endpoint checks them, its bound
assistant (another assistant's slug is refused, another assistant's object reads as missing), and for a
session the view permission of the page the chart belongs to.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication

from assistants.auth import ApiKeyAuthentication, ReadScopeOrPagePermission, assistant_for_key
from assistants.models import ApiKey, Assistant
from assistants.selectors import assistant_get
from dashboard.charts import ChartView


class ChartApi(ChartView):
    # The key first: an unauthenticated request is answered 401 with "WWW-Authenticate: Bearer".
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [ReadScopeOrPagePermission]
    # The view permission of the page that draws this chart, for session users.
    page_permission = ""

    def chart_assistant(self, slug: str) -> Assistant:
        """The assistant of the URL: 404 if unknown; for a key bound to another one, 403."""
        if isinstance(self.request.auth, ApiKey):
            return assistant_for_key(self.request, slug)
        assistant = assistant_get(slug=slug)
        if assistant is None:
            raise exceptions.NotFound(f"No assistant with slug '{slug}'.")
        return assistant

    def check_visible(self, assistant_id: int, missing: str) -> None:
        """Another assistant's object is, to a key bound elsewhere, as missing as an unknown one."""
        key = self.request.auth
        if isinstance(key, ApiKey) and key.assistant_id not in (None, assistant_id):
            raise exceptions.NotFound(missing)
