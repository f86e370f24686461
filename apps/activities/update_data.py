"""Update data: insert, update, insert-or-update or delete records of a schema from the rows of a
population, in the node's one transaction.

Each row names its record by a key: the row's own key when the population is of the schema
(e.g. after a Reconciliation), else a column (`key`, or the column mapped to the schema's key
field). Columns map to fields (by name unless `mapping` says otherwise); each mapping may apply
only when its condition (filter language over the row's columns and the record's current fields)
holds. Values are checked and converted by the import's SQL twins of `types.coerce`
(apps/schemas/imports.py): a value that does not fit rejects its row to `rejects`, with its
column and reason; a new record missing a required field is rejected too.

One `CREATE TEMP TABLE … AS SELECT` plans every row (reject, insert, update, unchanged, delete,
missing, skipped); then one INSERT, one UPDATE (only of records whose attributes change) and one
DELETE apply the plan. When several rows name one record, the last one (in key order: line order
for a loaded file) is applied. In a test run nothing is written: the counts are the plan's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from apps.activities.base import (
    Activity,
    Column,
    Done,
    ExecutionContext,
    NodeError,
    Population,
    Problem,
    Shape,
    ValidationContext,
)
from apps.activities.registry import register
from apps.activities.targeting import FILTER_SCHEMA, condition, filter_problems, records_of, single_input, source
from apps.core.errors import NotFound
from apps.schemas import imports
from apps.schemas.query.catalog import Catalog, SchemaDef
from apps.schemas.query.compiler import Compiled

S, L, Id = sql.SQL, sql.Literal, sql.Identifier
OPERATIONS = ("insert", "update", "upsert", "delete")
PLAN = Id("update_data_plan")
REJECT_COLUMNS = (Column("column", "text"), Column("value", "text"), Column("reason", "text"))
OUTCOMES = ("inserted", "updated", "unchanged", "deleted", "missing", "skipped", "rejected", "duplicates")


@dataclass
class Mapping:
    column: str
    field: str
    when: Any = None


def _schema_name(config: dict[str, Any], shape_dimension: str | None, default: str) -> str:
    if config.get("schema"):
        return config["schema"]
    if shape_dimension and not shape_dimension.startswith("file:"):
        return shape_dimension
    return default


def _mappings(config: dict[str, Any], columns: list[str], fields: list[str]) -> list[Mapping]:
    """The configured mapping, or every column named like a field."""
    if config.get("mapping") is not None:
        return [Mapping(m["column"], m["field"], m.get("when")) for m in config["mapping"]]
    return [Mapping(name, name) for name in columns if name in fields]


def _key_column(config: dict[str, Any], mappings: list[Mapping], primary_key: str, uses_own_key: bool) -> str | None:
    """The column holding each row's record key (None: the row's own key)."""
    if config.get("key"):
        return config["key"]
    if uses_own_key:
        return None
    return next((m.column for m in mappings if m.field == primary_key), None)


@register
class UpdateData(Activity):
    type = "update_data"
    label = "Update data"
    group = "data"
    description = ("Inserts, updates, upserts or deletes records of a schema from the population's rows, mapping "
                   "columns to fields; values that do not fit go to `rejects`. A test run writes nothing.")
    inputs = ("in",)
    outputs = ("out", "rejects")
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["operation"],
        "properties": {
            "schema": {"type": "string", "description": "default: the population's dimension (a schema), else the "
                                                        "campaign's"},
            "operation": {"enum": list(OPERATIONS)},
            "key": {"type": "string", "description": "the column holding the record key; default: the row's key "
                                                     "when the population is of the schema, else the column mapped "
                                                     "to the key field"},
            "mapping": {"type": "array", "maxItems": 500, "items": {
                "type": "object", "additionalProperties": False, "required": ["column", "field"],
                "properties": {
                    "column": {"type": "string"}, "field": {"type": "string"},
                    "when": {**FILTER_SCHEMA, "description": "apply this field only when the condition holds "
                                                             "(over the row's columns and the record's fields)"},
                }}, "description": "default: every column named like a field"},
            "max_rejects": {"type": ["integer", "null"], "minimum": 0,
                            "description": "the run fails (and nothing is written) when more rows are rejected"},
        },
    }

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        shape = single_input(ctx)
        if shape is not None and shape.is_token:
            return [ctx.problem("This activity needs a population: put it after one that selects records or loads "
                                "a file.")]
        name = _schema_name(config, shape.dimension if shape else None, ctx.dimension)
        schema = ctx.schemas.get(name)
        if schema is None:
            return [ctx.problem(f"Unknown schema {name!r}.", "config.schema")]
        fields = [f.name for f in schema.fields.all()]
        problems: list[Problem] = []
        for index, mapping in enumerate(config.get("mapping") or []):
            path = f"config.mapping.{index}"
            if mapping["field"] not in fields:
                problems.append(ctx.problem(f"Unknown field {mapping['field']!r} of {name!r}.", f"{path}.field"))
            elif [m["field"] for m in config["mapping"]].count(mapping["field"]) > 1:
                problems.append(ctx.problem(f"Several columns are mapped to {mapping['field']!r}.", f"{path}.field"))
            if shape is not None and shape.column(mapping["column"]) is None:
                problems.append(ctx.problem(f"The population has no column {mapping['column']!r}.", f"{path}.column"))
            if "when" in mapping and shape is not None:
                problems += filter_problems(ctx, mapping["when"], path=f"{path}.when", shape=Shape(name, shape.columns))
        if shape is None:
            return problems
        if config.get("key") and shape.column(config["key"]) is None:
            problems.append(ctx.problem(f"The population has no column {config['key']!r}.", "config.key"))
        mappings = _mappings(config, [c.name for c in shape.columns], fields)
        if _key_column(config, mappings, schema.primary_key, shape.dimension == name) is None \
                and shape.dimension != name:
            problems.append(ctx.problem(f"Which column holds the record key? Map a column to {schema.primary_key!r} "
                                        "or name it in `key`.", "config.key"))
        if config["operation"] == "update" and not [m for m in mappings if m.field != schema.primary_key]:
            problems.append(ctx.problem("No column is named like a field of the schema: give the mapping.",
                                        "config.mapping"))
        return problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        shape = next((s for s in inputs if not s.is_token), Shape(None))
        name = _schema_name(config, shape.dimension, ctx.dimension)
        return {"out": Shape(name, shape.columns), "rejects": Shape(shape.dimension, REJECT_COLUMNS)}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = records_of(inputs)
        name = _schema_name(config, population.dimension, ctx.dimension)
        try:
            schema = Catalog.load(ctx.tenant).resolve(name)
        except NotFound:
            raise NodeError(f"The schema {name!r} no longer exists.") from None
        return _Update(ctx, config, population, schema).run()


class _Update:
    def __init__(self, ctx: ExecutionContext, config: dict[str, Any], population: Population,
                 schema: SchemaDef) -> None:
        self.ctx = ctx
        self.config = config
        self.population = population
        self.schema = schema
        self.operation = config["operation"]
        columns = {c.name: c for c in population.columns}
        self.mappings = _mappings(config, list(columns), list(schema.fields))
        for m in self.mappings:
            if m.column not in columns:
                raise NodeError(f"The population has no column {m.column!r}.")
            if m.field not in schema.fields:
                raise NodeError(f"The field {m.field!r} of {schema.name!r} no longer exists.")
        self.key_column = _key_column(config, self.mappings, schema.primary_key, population.dimension == schema.name)
        if self.key_column is None and population.dimension != schema.name:
            raise NodeError(f"Which column holds the record key? Map a column to {schema.primary_key!r}.")
        if self.key_column is not None and self.key_column not in columns:
            raise NodeError(f"The population has no column {self.key_column!r}.")
        # The key field is written from the key (on insert); other mappings set fields.
        self.values = [m for m in self.mappings if m.field != schema.primary_key] if self.operation != "delete" else []
        self.fields = self._fields()

    def _fields(self) -> dict[str, Any]:
        from apps.schemas.models import Field
        from apps.tenants.scoping import tenant_scope

        with tenant_scope(self.ctx.tenant):
            return {f.name: f for f in Field.objects.filter(schema_id=self.schema.id)}

    def execute(self, statement: sql.Composable, params: list[Any] | None = None) -> Any:
        """Run `statement`; without `params`, no placeholder is parsed (literals may hold `%`)."""
        raw = getattr(self.ctx.store.cursor, "cursor", self.ctx.store.cursor)
        raw.execute(statement, params)
        return raw

    # -- the plan ----------------------------------------------------------------------------
    def _inline(self, compiled: Compiled) -> sql.Composable:
        """`compiled` with its parameters written in as literals (by psycopg), so that the plan is
        one statement without parameters (a `%` in a literal value is then never a placeholder)."""
        raw = getattr(self.ctx.store.cursor, "cursor", self.ctx.store.cursor)
        return S(psycopg.ClientCursor(raw.connection).mogrify(compiled.sql, compiled.params))

    def _plan_sql(self) -> sql.Composable:
        key_field = self.fields[self.schema.primary_key]
        key_conv = imports.conversion_for(key_field.type, key_field.enum_values)
        key_text = S("p.key") if self.key_column is None else S("(p.{})::text").format(Id(self.key_column))
        key_norm = key_conv.convert(key_conv.norm(key_text))
        key_value = key_conv.value(key_text, key_norm)
        key_ok = S("(coalesce({ok}, false) AND NOT coalesce({empty}, true) AND char_length(({v})::text) BETWEEN 1 AND {max})").format(
            ok=key_conv.ok(key_text, key_norm), empty=key_conv.empty(key_text, key_norm), v=key_value,
            max=L(imports.MAX_KEY))
        # layer A: each row's key, converted as the key field's values are
        layer_a = S("SELECT p.*, CASE WHEN {ok} THEN ({v})::text END AS _rk, CASE WHEN {ok} THEN {j} END AS _kj, "
                    "{shown} AS _kt FROM {src}").format(
            ok=key_ok, v=key_value, j=key_conv.as_jsonb(key_value), shown=key_text, src=source(self.population))
        # layer B: the record it names, and each mapped value's text and condition
        items = [S("p.key AS _src"), S("p._rk"), S("p._kj"), S("p._kt"), S("(r.key IS NOT NULL) AS _found"),
                 S("r.attributes AS _current")]
        items += [S("p.{} AS {}").format(Id(c.name), Id(f"_c{j}")) for j, c in enumerate(self.population.columns)]
        conversions = []
        for i, m in enumerate(self.values):
            field = self.fields[m.field]
            conv = imports.conversion_for(field.type, field.enum_values)
            conversions.append((i, conv))
            items.append(S("(p.{})::text AS {}").format(Id(m.column), Id(f"t{i}")))
            if m.when:
                compiled = condition(self.ctx, Population(table=None, dimension=self.schema.name,
                                                          columns=self.population.columns), m.when, scoped=False)
                items.append(S("coalesce(({}), false) AS {}").format(self._inline(compiled), Id(f"w{i}")))
            else:
                items.append(S("true AS {}").format(Id(f"w{i}")))
        layer_b = S("SELECT {items} FROM ({a}) p LEFT JOIN schemas_record r ON r.tenant_id = {t} "
                    "AND r.schema_id = {s} AND r.key = p._rk").format(
            items=S(", ").join(items), a=layer_a, t=L(self.ctx.tenant.pk), s=L(self.schema.id))
        layered = imports.with_normalised(S("{} OFFSET 0").format(layer_b), conversions)

        # layer C: what each row does
        sets, unsets, problems = [], [], []
        problems.append((S("s._rk IS NULL"), L(self.key_column or "key"), S("s._kt"),
                         S("CASE WHEN s._kt IS NULL OR s._kt = '' THEN 'no key' ELSE {} END").format(
                             L(f"not a valid key for {self.schema.name!r} ({key_field.type})"))))
        for i, conv in conversions:
            m = self.values[i]
            t, n, w = (S("s.{}").format(Id(f"{p}{i}")) for p in ("t", "n", "w"))
            ok = S("coalesce({}, false)").format(conv.ok(t, n))
            empty = S("coalesce({}, true)").format(conv.empty(t, n))
            value = conv.as_jsonb(conv.value(t, n))
            problems.append((S("({} AND NOT {})").format(w, ok), L(m.column), t, conv.reason(t, n)))
            sets.append((L(m.field), S("CASE WHEN {w} AND {ok} AND NOT {e} THEN {v} END").format(
                w=w, ok=ok, e=empty, v=value)))
            unsets.append(S("CASE WHEN {w} AND {e} THEN {f} END").format(w=w, e=empty, f=L(m.field)))
        set_sql = S("'{}'::jsonb")
        if sets:
            set_sql = S("jsonb_strip_nulls(jsonb_build_object({}))").format(
                S(", ").join(S("{}, {}").format(k, v) for k, v in sets))
        unset_sql = S("array_remove(ARRAY[{}]::text[], NULL)").format(S(", ").join(unsets)) if unsets \
            else S("'{}'::text[]")
        inserting = self.operation in ("insert", "upsert")
        if inserting:
            required = [f for f in self.fields.values() if f.required and f.default is None
                        and f.name != self.schema.primary_key]
            for f in required:
                problems.append((S("(NOT s._found AND NOT (({}) ? {}))").format(set_sql, L(f.name)), L(f.name),
                                 S("NULL::text"), L("This field is required for a new record.")))
        pick = S("(CASE {} END)").format(S(" ").join(S("WHEN {} THEN {}").format(c, L(k))
                                                     for k, (c, *_rest) in enumerate(problems)))
        chosen = [S("(CASE {} END)").format(S(" ").join(S("WHEN {} THEN ({})::text").format(c, part[p])
                                                          for c, *part in problems)) for p in range(3)]
        carried = [S("s.{}").format(Id(f"_c{j}")) for j in range(len(self.population.columns))]
        planned = S(
            "SELECT s._src, s._rk, s._kj, s._found, s._current, {pick} IS NULL AS _ok, {col} AS _bad_column, "
            "left({val}, {max}) AS _bad_value, {reason} AS _reason, {set} AS _set, {unset} AS _unset{carried} "
            "FROM ({layered}) s").format(
            pick=pick, col=chosen[0], val=chosen[1], max=L(imports.REJECT_VALUE_MAX), reason=chosen[2],
            set=set_sql, unset=unset_sql, layered=layered,
            carried=S("").join(S(", {}").format(c) for c in carried))
        # the last row naming a record wins; the others are counted as duplicates
        ranked = S("SELECT x.*, CASE WHEN x._ok THEN row_number() OVER (PARTITION BY x._ok, x._rk "
                   "ORDER BY length(x._src) DESC, x._src DESC) END AS _rank FROM ({}) x").format(planned)
        action = S(
            "CASE WHEN NOT y._ok THEN 'reject' WHEN y._rank > 1 THEN 'duplicate' "
            "WHEN {delete} THEN (CASE WHEN y._found THEN 'delete' ELSE 'missing' END) "
            "WHEN y._found THEN (CASE WHEN {insert_only} THEN 'skip' "
            "WHEN y._current IS DISTINCT FROM ((y._current - y._unset) || y._set) THEN 'update' ELSE 'unchanged' END) "
            "WHEN {update_only} THEN 'missing' ELSE 'insert' END").format(
            delete=L(self.operation == "delete"), insert_only=L(self.operation == "insert"),
            update_only=L(self.operation == "update"))
        return S("CREATE TEMP TABLE {plan} ON COMMIT DROP AS SELECT y.*, {action} AS _action FROM ({r}) y").format(
            plan=PLAN, action=action, r=ranked)

    # -- apply -------------------------------------------------------------------------------
    def run(self) -> Done:
        ctx = self.ctx
        tenant, schema_id = ctx.tenant.pk, self.schema.id
        # Record writes of a schema hold its row FOR KEY SHARE, as apps.schemas.services does: a
        # schema change (FOR UPDATE) waits for this node, record writes do not.
        # schemas_record has no foreign keys (apps.schemas.models.Record): a schema deleted since the
        # node read it is caught here.
        if self.execute(S("SELECT 1 FROM schemas_dataschema WHERE tenant_id = %s AND id = %s FOR KEY SHARE"),
                        [tenant, schema_id]).fetchone() is None:
            raise NodeError(f"The schema {self.schema.name!r} no longer exists.")
        self.execute(S("DROP TABLE IF EXISTS {}").format(PLAN))
        self.execute(S("SET LOCAL jit = off"))  # as the import: compiling these wide expressions costs more
        self.execute(self._plan_sql())
        planned = dict(self.execute(S("SELECT _action, count(*) FROM {} GROUP BY 1").format(PLAN)).fetchall())
        rejected = planned.get("reject", 0)
        max_rejects = self.config.get("max_rejects")
        if max_rejects is not None and rejected > max_rejects:
            first = self.execute(S("SELECT _src, _bad_column, _reason FROM {} WHERE NOT _ok "
                                   "ORDER BY length(_src), _src LIMIT 1").format(PLAN)).fetchone()
            raise NodeError(f"{rejected} row(s) were rejected, more than the {max_rejects} allowed (first: row "
                            f"{first[0]}, column {first[1]!r}: {first[2]}). Nothing was written.")
        counts = {"inserted": planned.get("insert", 0), "updated": planned.get("update", 0),
                  "unchanged": planned.get("unchanged", 0), "deleted": planned.get("delete", 0),
                  "missing": planned.get("missing", 0), "skipped": planned.get("skip", 0), "rejected": rejected,
                  "duplicates": planned.get("duplicate", 0)}
        if not ctx.is_test:
            written = self._write(tenant, schema_id)
            # A record that another transaction wrote since the plan is left as it is.
            counts["unchanged"] += counts["updated"] - written["updated"]
            counts.update(written)
            from apps.tenants.services import audit_record

            audit_record(tenant=ctx.tenant, actor=None, action="records.update_data", object_type="schemas.dataschema",
                         data={"schema": self.schema.name, "campaign": getattr(ctx.campaign, "pk", None),
                               "run": getattr(ctx.run, "pk", None), "node": ctx.node_id, "operation": self.operation,
                               **counts})
        else:
            ctx.log(f"Test run: nothing written; {self.operation} would give {counts}.", **counts)
        outputs = {"out": self._out()}
        if rejected:
            outputs["rejects"] = ctx.store.create(
                "rejects", S("SELECT _src, _bad_column, _bad_value, _reason FROM {} WHERE NOT _ok").format(PLAN),
                columns=list(REJECT_COLUMNS), dimension=self.population.dimension)
        self.execute(S("DROP TABLE IF EXISTS {}").format(PLAN))
        summary = {"operation": self.operation, "schema": self.schema.name, "test": ctx.is_test, **counts}
        return Done(outputs, summary=summary)

    def _write(self, tenant: int, schema_id: int) -> dict[str, int]:
        written = {"inserted": 0, "updated": 0, "deleted": 0}
        if self.operation == "delete":
            written["deleted"] = self.execute(S(
                "DELETE FROM schemas_record r USING {plan} x WHERE x._action = 'delete' AND r.tenant_id = %s "
                "AND r.schema_id = %s AND r.key = x._rk").format(plan=PLAN), [tenant, schema_id]).rowcount
            return written
        key = L(self.schema.primary_key)
        defaults = {f.name: f.default for f in self.fields.values() if f.default is not None}
        written["inserted"] = self.execute(S(
            "INSERT INTO schemas_record (tenant_id, schema_id, key, attributes, created_at, updated_at) "
            "SELECT {t}, {s}, x._rk, {d}::jsonb || x._set || jsonb_build_object({k}, x._kj), now(), now() "
            "FROM {plan} x WHERE x._action = 'insert' ON CONFLICT (tenant_id, schema_id, key) DO NOTHING").format(
            t=L(tenant), s=L(schema_id), d=L(json.dumps(defaults)), k=key, plan=PLAN)).rowcount
        written["updated"] = self.execute(S(
            "UPDATE schemas_record r SET attributes = (r.attributes - x._unset) || x._set, updated_at = now() "
            "FROM {plan} x WHERE x._action = 'update' AND r.tenant_id = %s AND r.schema_id = %s AND r.key = x._rk "
            "AND r.attributes IS DISTINCT FROM ((r.attributes - x._unset) || x._set)").format(plan=PLAN),
            [tenant, schema_id]).rowcount
        return written

    def _out(self) -> Population:
        columns = self.population.columns
        select = S("SELECT _rk{} FROM {} WHERE _action IN ('insert', 'update', 'unchanged', 'delete')").format(
            S("").join(S(", {}").format(Id(f"_c{j}")) for j in range(len(columns))), PLAN)
        return self.ctx.store.create("out", select, columns=list(columns), dimension=self.schema.name)

