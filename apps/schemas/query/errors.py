"""The one exception a filter that cannot run raises: every problem found in it, each with the
path of the offending node, so the API answers 400 with all of them at once."""

from __future__ import annotations

from typing import TypedDict

from apps.core.errors import ApplicationError


class Problem(TypedDict):
    path: str
    message: str


class FilterError(ApplicationError):
    """A filter tree that does not validate against its schema. `problems` lists each problem as
    {"path": "all[2].where.field", "message": "..."}; the API shows them under `fields["filter"]`."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0] if problems else {"path": "", "message": "The filter is not valid."}
        where = f" (at {first['path']})" if first["path"] else ""
        super().__init__(f"Invalid filter: {first['message']}{where}", code="invalid_filter", status=400,
                         fields={"filter": list(problems)})
        self.problems = list(problems)
