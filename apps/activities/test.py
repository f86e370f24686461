"""Test: ordered conditions on event variables and on the incoming count; the first that holds
takes its branch, else the default branch."""

from __future__ import annotations

from typing import Any

from apps.activities.base import (
    Activity,
    Done,
    ExecutionContext,
    Population,
    Problem,
    ValidationContext,
    first_population,
)
from apps.activities.registry import register

OPS = ["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "is_null", "is_not_null"]
CONDITION = {
    "type": "object",
    "description": "{var, op, value} | {count: {op, value}} | {all: [...]} | {any: [...]} | {not: {...}}",
}


def evaluate(condition: dict[str, Any], *, variables: dict[str, Any], count: int) -> bool:
    if "all" in condition:
        return all(evaluate(c, variables=variables, count=count) for c in condition["all"])
    if "any" in condition:
        return any(evaluate(c, variables=variables, count=count) for c in condition["any"])
    if "not" in condition:
        return not evaluate(condition["not"], variables=variables, count=count)
    if "count" in condition:
        left, op, right = count, condition["count"]["op"], condition["count"].get("value")
    else:
        left, op, right = variables.get(condition["var"]), condition["op"], condition.get("value")
    if op == "is_null":
        return left is None
    if op == "is_not_null":
        return left is not None
    if op in ("in", "not_in"):
        return (left in (right or [])) == (op == "in")
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if left is None or right is None:
        return False
    try:
        return {"lt": left < right, "lte": left <= right, "gt": left > right, "gte": left >= right}[op]
    except TypeError:
        return False


def _check(condition: Any, ctx: ValidationContext, path: str) -> list[Problem]:
    if not isinstance(condition, dict) or len(condition) == 0:
        return [ctx.problem("A condition must be an object.", path)]
    for group in ("all", "any"):
        if group in condition:
            items = condition[group]
            if not isinstance(items, list):
                return [ctx.problem(f"`{group}` must be a list.", f"{path}.{group}")]
            return [p for i, c in enumerate(items) for p in _check(c, ctx, f"{path}.{group}[{i}]")]
    if "not" in condition:
        return _check(condition["not"], ctx, f"{path}.not")
    if "count" in condition:
        inner = condition["count"]
        if not isinstance(inner, dict) or inner.get("op") not in OPS or not isinstance(inner.get("value", 0), int):
            return [ctx.problem("`count` needs an operator and an integer value.", f"{path}.count")]
        return []
    if condition.get("var") not in ctx.variables:
        return [ctx.problem(f"Unknown variable {condition.get('var')!r}.", f"{path}.var")]
    if condition.get("op") not in OPS:
        return [ctx.problem(f"Unknown operator {condition.get('op')!r}.", f"{path}.op")]
    return []


@register
class Test(Activity):
    type = "test"
    label = "Test"
    group = "flow"
    runs_inline = True  # cheap: the engine executes it within advance (docs/engine.md)
    description = "If/else on event variables and the incoming count: the first condition that holds wins."
    outputs = ()
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["conditions"],
        "properties": {
            "conditions": {"type": "array", "minItems": 1, "maxItems": 20, "items": {
                "type": "object", "additionalProperties": False, "required": ["port", "when"],
                "properties": {"port": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,32}$"},
                               "label": {"type": "string"}, "when": CONDITION}}},
            "default_port": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,32}$", "default": "default"},
        },
    }

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        return [c["port"] for c in config.get("conditions", [])] + [config.get("default_port", "default")]

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        problems = []
        ports = self.output_ports(config)
        if len(set(ports)) != len(ports):
            problems.append(ctx.problem("Each branch needs its own port name.", "config.conditions"))
        for index, condition in enumerate(config["conditions"]):
            problems += _check(condition["when"], ctx, f"config.conditions[{index}].when")
        return problems

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = first_population(inputs)
        for condition in config["conditions"]:
            if evaluate(condition["when"], variables=ctx.variables, count=population.count):
                ctx.log(f"Condition of branch {condition['port']!r} holds.")
                return Done({condition["port"]: population}, summary={"branch": condition["port"]})
        port = config.get("default_port", "default")
        ctx.log(f"No condition holds: default branch {port!r}.")
        return Done({port: population}, summary={"branch": port})
