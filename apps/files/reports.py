"""The rejects report of a data activity of a run (Load file, Update data): its `rejects`
population written as CSV to a temporary file, so that a report of millions of lines never sits
in memory."""

from __future__ import annotations

import tempfile
from typing import IO, Any

from django.db import connection

from apps.activities.base import Population
from apps.activities.load_file import rejects_report
from apps.campaigns.models import NodeState
from apps.core.errors import NotFound
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

HEADER = {"load_file": "line", "update_data": "row"}


def rejects_file(*, tenant: Tenant, run: Any, node_id: str) -> IO[bytes]:
    """The CSV report (`line`/`row`, column, value, reason) of node `node_id` of `run`: just the
    header when the node rejected nothing; NotFound when the run has no such data node."""
    with tenant_scope(tenant):
        node = NodeState.objects.filter(tenant=tenant, run=run, node_id=str(node_id)[:64]).first()
    if node is None or node.type not in HEADER:
        raise NotFound("No Load file or Update data node with this id in the run.")
    first = HEADER[node.type]
    out = tempfile.TemporaryFile()  # noqa: SIM115 - the response closes it
    rejects = (node.outputs or {}).get("rejects")
    if rejects and rejects.get("table") and not run.purged_at:
        with connection.cursor() as cursor:
            for block in rejects_report(cursor, Population.from_dict(rejects), first=first):
                out.write(block)
    else:
        out.write(f"{first},column,value,reason\n".encode())
    out.seek(0)
    return out
