"""What every activity type is: a declarative config schema (JSON Schema, served to clients),
ports, validation against the tenant's data model, and an execution that produces its output
populations in SQL. The engine (apps/campaigns/engine.py) knows only this module."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema

if TYPE_CHECKING:
    from apps.campaigns.populations import PopulationStore
    from apps.schemas.models import DataSchema
    from apps.tenants.models import Tenant


@dataclass
class Problem:
    """One thing wrong with a graph: the node, where in its config, and why."""

    message: str
    node: str | None = None
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class Column:
    """An extra column a population carries beside `key` (enrichment, segment code, file data)."""

    name: str
    type: str  # a PostgreSQL type: text, bigint, numeric, boolean, date, timestamptz, jsonb

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class Shape:
    """What a transition carries, as known when a graph is validated: records of `dimension`
    with extra `columns`, or a bare token (`dimension` None)."""

    dimension: str | None
    columns: tuple[Column, ...] = ()

    @property
    def is_token(self) -> bool:
        return self.dimension is None

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


TOKEN = Shape(None)


@dataclass
class Population:
    """A set of records flowing on a transition: rows of a working table (`key` plus `columns`),
    or, when `table` is None, a bare token (e.g. the start of the flow)."""

    table: str | None
    count: int = 0
    dimension: str | None = None
    columns: list[Column] = field(default_factory=list)

    @property
    def is_token(self) -> bool:
        return self.table is None

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "count": self.count, "dimension": self.dimension,
                "columns": [c.as_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Population:
        return cls(table=data.get("table"), count=data.get("count", 0), dimension=data.get("dimension"),
                   columns=[Column(**c) for c in data.get("columns", [])])

    @classmethod
    def token(cls) -> Population:
        return cls(table=None)

    @property
    def shape(self) -> Shape:
        return Shape(None if self.is_token else self.dimension, tuple(self.columns))


@dataclass
class Done:
    """The node finished. `outputs` maps each activated port to its population; a port left out
    is not activated (its branch is skipped)."""

    outputs: dict[str, Population]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Wait:
    """The node waits: the engine stores `state` and runs the node again at `until` (or when
    something kicks it, e.g. a task decision). Nothing blocks a worker meanwhile."""

    until: dt.datetime | None
    state: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


class NodeError(Exception):
    """An activity could not run; the message is shown to users as the node's error."""


@dataclass
class ValidationContext:
    tenant: Tenant
    dimension: str
    variables: dict[str, dict[str, Any]]  # declared event variables: name -> {type, default}
    schemas: dict[str, DataSchema]        # the tenant's schemas by name
    node_id: str = ""
    campaign: Any = None
    # What arrives on each incoming transition of the node being checked, in edge order; None
    # when it cannot be known (the graph has a cycle or an upstream node is invalid).
    inputs: list[Shape] | None = None
    input_sources: list[str] = field(default_factory=list)  # source activity of each input, in order

    def problem(self, message: str, path: str = "") -> Problem:
        return Problem(message=message, node=self.node_id, path=path)


@dataclass
class ExecutionContext:
    tenant: Tenant
    run: Any
    campaign: Any
    node_id: str
    config: dict[str, Any]
    variables: dict[str, Any]
    is_test: bool
    now: dt.datetime
    state: dict[str, Any]
    store: PopulationStore
    dimension: str
    logs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    input_sources: list[str] = field(default_factory=list)  # source activity of each input, in order

    def log(self, message: str, level: str = "info", **data: Any) -> None:
        self.logs.append((level, message, data))


class Activity:
    """Base class of every activity type. Subclasses set the class attributes, and implement
    `execute` (and `validate` for rules JSON Schema cannot say)."""

    type: ClassVar[str] = ""
    label: ClassVar[str] = ""
    group: ClassVar[str] = "flow"        # flow | targeting | data | channels | approvals
    description: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("in",)
    outputs: ClassVar[tuple[str, ...]] = ("out",)
    min_inputs: ClassVar[int] = 1        # incoming edges needed (0 for start activities)
    max_inputs: ClassVar[int | None] = None
    is_start: ClassVar[bool] = False
    is_channel: ClassVar[bool] = False
    config_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}, "additionalProperties": False}

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        """The ports this node offers with this config (Fork, Test and Split name their own)."""
        return list(self.outputs)

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        """What each output port carries, given what arrives (called on a valid config only).
        By default every port passes on the first input that carries records."""
        shape = first_shape(inputs)
        return dict.fromkeys(self.output_ports(config), shape)

    def check_config(self, config: Any, ctx: ValidationContext) -> list[Problem]:
        validator = jsonschema.Draft202012Validator(self.config_schema)
        problems = []
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(ctx.problem(error.message, path=f"config.{path}" if path else "config"))
        if problems:
            return problems
        return self.validate(config, ctx)

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        return []

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done | Wait:
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "type": cls.type, "label": cls.label or cls.type.replace("_", " ").title(), "group": cls.group,
            "description": cls.description, "inputs": list(cls.inputs), "outputs": list(cls.outputs),
            "min_inputs": cls.min_inputs, "max_inputs": cls.max_inputs, "is_start": cls.is_start,
            "is_channel": cls.is_channel, "config_schema": cls.config_schema,
        }


def first_shape(inputs: list[Shape]) -> Shape:
    """The shape arriving on a single-input activity (a token when nothing carries records)."""
    return next((shape for shape in inputs if not shape.is_token), TOKEN)


def first_population(inputs: list[Population]) -> Population:
    """The population arriving on a single-input activity (a token when nothing carries rows)."""
    for population in inputs:
        if not population.is_token:
            return population
    return inputs[0] if inputs else Population.token()
