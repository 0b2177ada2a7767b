"""A small DRF project for weir's adapter tests."""

SECRET_KEY = "weir-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "weir.contrib.drf",
]
MIDDLEWARE = ["weir.contrib.drf.RateLimitHeadersMiddleware"]
ROOT_URLCONF = "tests.drf_project.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tests.drf_project.auth.HeaderAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_THROTTLE_CLASSES": [
        "weir.contrib.drf.AnonRateThrottle",
        "weir.contrib.drf.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": "3/min",
        "user": "5/min",
        "uploads": "2/hour",
        "burst": "2/min",
        "sustained": "3/hour",
    },
}
# The tests point this at the weir they start.
WEIR = {"URL": "http://127.0.0.1:7700"}
