"""The Django app: add ``"weir.contrib.drf"`` to ``INSTALLED_APPS`` for the
system checks."""

from django.apps import AppConfig


class WeirDrfConfig(AppConfig):
    name = "weir.contrib.drf"
    label = "weir_drf"
    verbose_name = "weir rate limiting"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
