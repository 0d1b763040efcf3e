"""``DELETE /api/v1/users/{user_ref}``: erase one customer (thin: ``training.erasure`` acts)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.auth import ManageScope, assistant_for_key, request_key, require_user_permission
from assistants.serializers import QuerySerializer, QueryTextField
from training.erasure import ERASE_PERM, customer_erase


class RecordSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    by = serializers.CharField(source="user.username", default=None)


class UserEraseApi(APIView):
    """A manage key acting for a user with the ``feedback.erase_customer`` permission erases a customer."""

    permission_classes = [ManageScope]

    class OutputSerializer(serializers.Serializer):
        erased = serializers.BooleanField(help_text="False: nothing was stored (any more); nothing changed.")
        detail = serializers.CharField(source="describe")
        subject = serializers.CharField(help_text="Keyed hash of the user reference, as in the record.")
        interactions = serializers.IntegerField()
        feedback = serializers.IntegerField()
        other_rows = serializers.DictField(child=serializers.IntegerField())
        datasets = serializers.ListField(
            child=serializers.IntegerField(), help_text="Marked: rebuilt without them before their next use."
        )
        model_versions = serializers.ListField(
            child=serializers.DictField(), help_text="Trained on them (or on top of such a version)."
        )
        record = RecordSerializer(allow_null=True)
        previous = RecordSerializer(allow_null=True, help_text="The latest earlier erasure of this customer.")

    class FilterSerializer(QuerySerializer):
        assistant = QueryTextField(
            help_text="Erase in this assistant only. Default: the key's assistant, or every assistant "
            "for a key bound to none."
        )

    @extend_schema(parameters=[FilterSerializer], responses={200: OutputSerializer})
    def delete(self, request: Request, user_ref: str) -> Response:
        # Erasure cannot be undone: a person answers for it, as for approvals.
        require_user_permission(request, ERASE_PERM)
        slug = self.FilterSerializer.parse(request).get("assistant")
        if slug or request_key(request).assistant_id is not None:
            assistants = [assistant_for_key(request, slug)]
        else:
            assistants = None
        try:
            result = customer_erase(user_ref=user_ref, assistants=assistants, user=request.user)
        except ValueError as exc:
            raise exceptions.ValidationError({"user_ref": [str(exc)]}) from None
        return Response(self.OutputSerializer(result).data)
