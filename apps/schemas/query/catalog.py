"""What a filter may name: a tenant's schemas, their fields and links, read once per compilation
into plain immutable objects so that validation and compilation never touch the ORM again."""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.core.errors import NotFound
from apps.schemas.models import DataSchema, Field, FieldType, Link
from apps.tenants.models import Tenant
from apps.tenants.scoping import TenantScopeError, tenant_scope


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    enum_values: tuple[str, ...] = ()
    # The schemas_record column of a built-in pseudo field (`_key`, `_created_at`, `_updated_at`);
    # None for a field stored in `attributes`.
    column: str | None = None
    # The alias of another table the column belongs to: a campaign population's extra column
    # (an enrichment, a segment code) is `<table>.<column>`, not a column of the record.
    table: str | None = None


@dataclass(frozen=True)
class LinkDef:
    name: str
    kind: str
    target_id: int
    source_field: str
    target_field: str


@dataclass(frozen=True)
class SchemaDef:
    id: int
    name: str
    primary_key: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    links: dict[str, LinkDef] = field(default_factory=dict)

    def field_named(self, name: str) -> FieldDef | None:
        return BUILTIN_FIELDS.get(name) or self.fields.get(name)


BUILTIN_FIELDS: dict[str, FieldDef] = {
    "_key": FieldDef("_key", FieldType.STRING, column="key"),
    "_created_at": FieldDef("_created_at", FieldType.DATETIME, column="created_at"),
    "_updated_at": FieldDef("_updated_at", FieldType.DATETIME, column="updated_at"),
}


@dataclass(frozen=True)
class Catalog:
    tenant_id: int
    schemas: dict[int, SchemaDef]

    @classmethod
    def load(cls, tenant: Tenant) -> Catalog:
        """Every schema of `tenant` with its fields and links (three queries)."""
        with tenant_scope(tenant):
            fields: dict[int, dict[str, FieldDef]] = {}
            for f in Field.objects.order_by("schema_id", "position", "id"):
                values = tuple(str(v) for v in f.enum_values) if isinstance(f.enum_values, list) else ()
                fields.setdefault(f.schema_id, {})[f.name] = FieldDef(f.name, f.type, values)
            links: dict[int, dict[str, LinkDef]] = {}
            for link in Link.objects.all():
                links.setdefault(link.schema_id, {})[link.name] = LinkDef(
                    link.name, link.kind, link.target_id, link.source_field, link.target_field)
            schemas = {
                s.id: SchemaDef(s.id, s.name, s.primary_key, fields.get(s.id, {}), links.get(s.id, {}))
                for s in DataSchema.objects.all()
            }
        return cls(tenant.pk, schemas)

    def resolve(self, schema: DataSchema | str | int) -> SchemaDef:
        """The definition of `schema` (a DataSchema of this tenant, its name or its id)."""
        if isinstance(schema, DataSchema):
            if schema.tenant_id != self.tenant_id:
                raise TenantScopeError(f"schema {schema.pk} belongs to another tenant")
            found = self.schemas.get(schema.pk)
        elif isinstance(schema, int):
            found = self.schemas.get(schema)
        else:
            found = next((s for s in self.schemas.values() if s.name == schema), None)
        if found is None:
            raise NotFound("Schema not found.")
        return found
