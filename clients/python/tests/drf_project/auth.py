"""Authentication for the test project: the X-User header names the user."""

from rest_framework.authentication import BaseAuthentication


class HeaderUser:
    """A user named by the X-User header, on the plan in X-Plan."""

    is_authenticated = True

    def __init__(self, name: str, plan: str) -> None:
        self.pk = name
        self.plan = plan


class HeaderAuthentication(BaseAuthentication):
    def authenticate(self, request):
        name = request.headers.get("X-User")
        return (HeaderUser(name, request.headers.get("X-Plan", "free")), None) if name else None
