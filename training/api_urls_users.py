from django.urls import path

from training import api_users

urlpatterns = [
    # path, not str: customer references may contain "/" (sent percent-encoded).
    path("users/<path:user_ref>", api_users.UserEraseApi.as_view(), name="training-api-user-erase"),
]
