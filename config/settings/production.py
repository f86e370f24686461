"""Production settings: secure by default, every secret from the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

for required in ("DATABASE_URL", "CELERY_BROKER_URL"):
    if not os.environ.get(required):
        raise ImproperlyConfigured(f"{required} must be set in production (no embedded servers)")

from .base import *  # noqa: E402, F403
from .base import env_bool  # noqa: E402

DEBUG = False
CHANNELS_ALLOW_PRIVATE_NETWORKS = env_bool("CHANNELS_ALLOW_PRIVATE_NETWORKS", False)
if os.environ.get("SECRET_KEY", "").startswith("dev-only") or not os.environ.get("SECRET_KEY"):
    raise ImproperlyConfigured("SECRET_KEY must be set in production")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
