"""Settings for the test suite: the real PostgreSQL and broker named by the environment."""

from .base import *  # noqa: F403
from .base import REST_FRAMEWORK

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "user": "100000/min", "auth": "10000/min"},
}

# A slow activity the crash tests kill a worker in the middle of.
EXTRA_ACTIVITY_MODULES = ["tests.campaigns.slow_activity"]
