"""Signals other apps listen to, so that the tenants app does not need to know them."""

from django.dispatch import Signal

# Sent inside the creating transaction with `tenant` and `by`: apps install what every tenant
# has from its first day (the built-in profile schema, its scheduling entry, ...).
tenant_created = Signal()
