"""Where campaign files are kept: MEDIA_ROOT/campaign-files/<tenant>/<random name>. Paths in the
database are relative to MEDIA_ROOT and are refused when they would lead outside it."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.tenants.scoping import TenantScopeError

CHUNK = 1 << 20


def directory(tenant_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "campaign-files" / str(int(tenant_id))


def new_path(tenant_id: int) -> Path:
    """A new, unique place for a file of `tenant_id`."""
    return directory(tenant_id) / uuid.uuid4().hex


def relative(path: Path) -> str:
    return str(path.relative_to(Path(settings.MEDIA_ROOT)))


def absolute(relative_path: str) -> Path:
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / relative_path).resolve()
    if root not in path.parents:
        raise TenantScopeError(f"refusing a file outside MEDIA_ROOT: {relative_path!r}")
    return path


def remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def store(tenant_id: int, file: Any) -> tuple[Path, int]:
    """(path, size) of the upload in the tenant's directory: a file the upload handler already
    wrote there stays where it is; anything else is copied chunk by chunk."""
    stored = getattr(file, "stored_path", None)
    if stored is not None and Path(stored).parent == directory(tenant_id):
        return Path(stored), Path(stored).stat().st_size
    path = new_path(tenant_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with open(path, "wb") as out:
            chunks = file.chunks(CHUNK) if hasattr(file, "chunks") else iter(lambda: file.read(CHUNK), b"")
            for chunk in chunks:
                size += len(chunk)
                out.write(chunk)
    except BaseException:
        remove(path)
        raise
    return path, size
