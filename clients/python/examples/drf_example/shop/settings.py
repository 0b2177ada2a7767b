"""Settings of the example shop: DRF's throttles swapped for weir's."""

import os

SECRET_KEY = "example-only"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "weir.contrib.drf",  # system checks for the WEIR setting
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "weir.contrib.drf.RateLimitHeadersMiddleware",  # rate-limit headers on every throttled response
]
ROOT_URLCONF = "shop.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    # Drop-in replacements for DRF's own, same settings.
    "DEFAULT_THROTTLE_CLASSES": [
        "weir.contrib.drf.AnonRateThrottle",
        "weir.contrib.drf.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"anon": "5/min", "user": "100/min", "checkout": "2/min"},
}

WEIR = {
    "URL": os.environ.get("WEIR_URL", "http://127.0.0.1:7700"),
    "TIMEOUT": 0.1,
    "FAILURE_MODE": "local",  # weir down: enforce the same limits in-process
    "TRUSTED_PROXIES": [],  # e.g. ["10.0.0.0/8"] behind a load balancer
}
