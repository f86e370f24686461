"""The engine fixtures (Celery eager mode, the real worker) are shared with tests/campaigns."""

from tests.campaigns.conftest import eager, worker  # noqa: F401  (fixtures)
