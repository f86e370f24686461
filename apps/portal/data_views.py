"""Data pages of the portal: schemas and their editor, the record browser, imports with their live
progress, audiences and the audience builder.

Views are thin, as in the rest of the portal: forms check the shape of the input, the services of
apps/schemas and apps/audiences decide, and their `ApplicationError`s are shown next to the fields
they name. Every object is looked up through a selector of the current tenant, so another
tenant's schema, record, import or audience is a 404; capabilities come from
apps/tenants/roles.py (a page or action the role may not use is a 404, as elsewhere in the
portal)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.audiences import selectors as audience_selectors
from apps.audiences import services as audience_services
from apps.audiences.export import csv_lines
from apps.audiences.models import Audience, AudienceKind
from apps.core.errors import ApplicationError, NotFound
from apps.portal import rule_builder as rb
from apps.portal.views import portal_page
from apps.profiles import selectors as profile_selectors
from apps.schemas import imports, selectors, services
from apps.schemas.api.imports import ImportUploadHandler
from apps.schemas.builtin import PROFILE
from apps.schemas.models import (
    DataSchema,
    Field,
    FieldType,
    ImportFormat,
    ImportJob,
    ImportMode,
    ImportStatus,
    LinkKind,
)
from apps.schemas.query import FilterError
from apps.schemas.services import KEY_TYPES
from apps.tenants.roles import Role, role_can

RECORDS_PER_PAGE = 25
IMPORTS_PER_PAGE = 20
AUDIENCES_PER_PAGE = 25
BROWSER_COLUMNS = 6
SAMPLE_COLUMNS = 4
LIVE_SAMPLE = 5
DETAIL_SAMPLE = 20

# Keys of a refusal's `fields` that are details of the message rather than form fields.
DETAIL_KEYS = frozenset({"count", "examples", "users", "links"})


# --- Helpers -------------------------------------------------------------------------------------


def _can(request: HttpRequest, capability: str) -> bool:
    return role_can(request.membership.role, capability)


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _role_label(request: HttpRequest) -> str:
    return Role(request.membership.role).label


def _messages_of(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return [str(item.get("message", item)) if isinstance(item, dict) else str(item) for item in items]


def explain(exc: ApplicationError) -> str:
    """A refusal in one sentence or a few: its message, then who uses the object, examples of the
    values that do not fit, the links in the way."""
    parts = [exc.message]
    details = exc.fields or {}
    users = details.get("users")
    if isinstance(users, list) and users:
        named = [f"{u.get('type', 'object')} “{u.get('name', u.get('id'))}”" for u in users[:10] if isinstance(u, dict)]
        parts.append("Used by " + ", ".join(named) + ("…" if len(users) > 10 else "") + ".")
    examples = details.get("examples")
    if isinstance(examples, list) and examples:
        shown = []
        for example in examples[:10]:
            if isinstance(example, dict):
                value = example.get("value")
                shown.append(str(example.get("key")) + ("" if value is None else
                                                        f" ({json.dumps(value, ensure_ascii=False)[:60]})"))
        parts.append("For example: " + ", ".join(shown) + ".")
    links = details.get("links")
    if isinstance(links, list) and links:
        parts.append("Linked from " + ", ".join(map(str, links)) + ".")
    return " ".join(parts)


def service_error(form: forms.Form, exc: ApplicationError, *, aliases: dict[str, str] | None = None,
                  near: str | None = None) -> None:
    """Show a service's refusal on `form`: each message next to the field it names (`aliases`
    maps the service's names to the form's); a refusal that names no field of the form goes next
    to the `near` field, else on the form as a whole."""
    aliases = aliases or {}
    placed, stray = False, []
    for key, value in (exc.fields or {}).items():
        if key in DETAIL_KEYS:
            continue
        target = aliases.get(key, key)
        for message in _messages_of(value):
            if target in form.fields:
                form.add_error(target, message)
                placed = True
            else:
                stray.append(f"{key}: {message}")
    if not placed:
        text = " ".join([explain(exc), *stray])
        form.add_error(near if near in form.fields else None, text)
    elif stray:
        form.add_error(None, " ".join(stray))


def display(field_type: str | None, value: Any) -> str:
    """A stored value as the pages show it (dates and times in the workspace's time zone)."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if field_type == FieldType.DATETIME and isinstance(value, str):
        moment = parse_datetime(value.replace("Z", "+00:00"))
        if moment is not None:
            return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 200 else text[:199] + "…"
    return str(value)


def _default_text(field: Field) -> str:
    if field.default is None:
        return ""
    if field.type == FieldType.JSON:
        return json.dumps(field.default, ensure_ascii=False)
    if isinstance(field.default, bool):
        return "true" if field.default else "false"
    return str(field.default)


def _schema(request: HttpRequest, name: str) -> DataSchema:
    return selectors.schema_get(tenant=request.tenant, name=name)


def _schemas(request: HttpRequest) -> list[DataSchema]:
    return list(selectors.schema_list(tenant=request.tenant))


# --- Forms ---------------------------------------------------------------------------------------

TYPE_CHOICES = FieldType.choices
KEY_TYPE_CHOICES = [(value, label) for value, label in FieldType.choices if value in KEY_TYPES]


class SchemaCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Lower-case letters, digits and underscores, e.g. "
                                                     "<code>purchase</code>. It cannot change later.",
                           widget=forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "none"}))
    label = forms.CharField(max_length=200, required=False, help_text="Shown in the portal; defaults to the name.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    key_name = forms.CharField(label="Key field", max_length=100, initial="id",
                               help_text="The field whose value identifies a record.")
    key_type = forms.ChoiceField(label="Key type", choices=KEY_TYPE_CHOICES, initial=FieldType.STRING)

    ALIASES = {"primary_key.name": "key_name", "primary_key.type": "key_type", "primary_key": "key_type"}


class SchemaEditForm(forms.Form):
    label = forms.CharField(max_length=200, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class SchemaDeleteForm(forms.Form):
    force = forms.BooleanField(required=False, label="Also delete its records and the links to it")


def _enum_list(text: str) -> list[str] | None:
    values = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return values or None


class _FieldAttributesForm(forms.Form):
    label = forms.CharField(max_length=200, required=False)
    type = forms.ChoiceField(choices=TYPE_CHOICES, initial=FieldType.STRING)
    required = forms.BooleanField(required=False)
    default = forms.CharField(required=False, max_length=10_000,
                              help_text="The value a record gets when it has none. Leave empty for none.")
    indexed = forms.BooleanField(required=False, help_text="Faster filters on this field (built without "
                                                           "blocking writes).")
    enum_values = forms.CharField(label="Choices", required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                  help_text="For a choice field: one value per line.")

    def attributes(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"label": data.get("label") or "", "type": data["type"], "required": bool(data.get("required")),
                "default": data.get("default") or None, "indexed": bool(data.get("indexed")),
                "enum_values": _enum_list(data.get("enum_values") or "")}


class FieldAddForm(_FieldAttributesForm):
    name = forms.CharField(max_length=100, help_text="Lower-case letters, digits and underscores.",
                           widget=forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "none"}))
    field_order = ["name", "label", "type", "required", "default", "indexed", "enum_values"]


class FieldEditForm(_FieldAttributesForm):
    """The attributes of an existing field, prefixed with its name so that every row of the
    schema page has its own form."""

    def __init__(self, *args: Any, field: Field, schema: DataSchema, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", f"edit-{field.name}")
        kwargs.setdefault("initial", {
            "label": field.label, "type": field.type, "required": field.required, "default": _default_text(field),
            "indexed": field.indexed, "enum_values": "\n".join(map(str, field.enum_values or [])),
        })
        super().__init__(*args, **kwargs)
        self.schema_field = field
        if field.is_builtin or field.name == schema.primary_key:
            # What the services refuse to change anyway is not offered (they still decide).
            self.fields["type"].disabled = True
            self.fields["type"].help_text = ("The key keeps its type." if field.name == schema.primary_key
                                             else "A built-in field keeps its type.")


class LinkAddForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="How filters name the link, e.g. <code>purchases</code>.",
                           widget=forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "none"}))
    label = forms.CharField(max_length=200, required=False)
    kind = forms.ChoiceField(choices=LinkKind.choices, initial=LinkKind.MANY_TO_ONE,
                             help_text="Many to one: this field names a record of the target (a purchase's "
                                       "profile). One to many: the target's records name this one.")
    target = forms.ChoiceField(label="Target schema")
    source_field = forms.CharField(label="Field of this schema", max_length=100)
    target_field = forms.CharField(label="Field of the target", max_length=100)
    reverse_name = forms.CharField(label="Reverse link name", max_length=100, required=False,
                                   help_text="Optional: also create the link back from the target.")
    reverse_label = forms.CharField(label="Reverse link label", max_length=200, required=False)

    def __init__(self, *args: Any, schemas: list[DataSchema], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [(s.name, f"{s.label} ({s.name})") for s in schemas]


class RecordSearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=200,
                        widget=forms.SearchInput(attrs={"placeholder": "Key or text"}))
    filter = forms.CharField(label="Filter (JSON)", required=False, max_length=100_000,
                             widget=forms.TextInput(attrs={"placeholder": '{"field": "country", "op": "eq", '
                                                                          '"value": "FR"}', "spellcheck": "false"}))


DELIMITERS = [("", "Comma (tab for .tsv files)"), (";", "Semicolon"), ("tab", "Tab"), ("|", "Pipe")]
ENCODINGS = [("", "UTF-8"), ("latin-1", "Latin-1 (ISO 8859-1)"), ("iso8859-15", "ISO 8859-15"),
             ("cp1252", "Windows-1252"), ("cp1250", "Windows-1250"), ("cp1251", "Windows-1251"),
             ("iso8859-2", "ISO 8859-2"), ("koi8-r", "KOI8-R"), ("shift_jis", "Shift JIS"), ("gb18030", "GB 18030"),
             ("euc_jp", "EUC-JP"), ("big5", "Big5")]


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header line of field names, or JSON lines (.jsonl).",
                           error_messages={"required": "Choose the file to import."})
    mode = forms.ChoiceField(choices=[(ImportMode.UPSERT, "Upsert"), (ImportMode.ALL_OR_NOTHING, "All or nothing")],
                             initial=ImportMode.UPSERT,
                             help_text="Upsert: valid rows are written, rejected ones reported. All or nothing: if "
                                       "one row is rejected, nothing is written.")
    format = forms.ChoiceField(choices=[("", "From the file name"), *ImportFormat.choices], required=False)
    delimiter = forms.ChoiceField(label="CSV delimiter", choices=DELIMITERS, required=False)
    encoding = forms.ChoiceField(choices=ENCODINGS, required=False)


class AudienceFilterForm(forms.Form):
    search = forms.CharField(label="Search", required=False, max_length=200,
                             widget=forms.SearchInput(attrs={"placeholder": "Name or description"}))
    kind = forms.ChoiceField(label="Kind", required=False, choices=[("", "Any kind"), *AudienceKind.choices])
    schema = forms.ChoiceField(label="Schema", required=False)

    def __init__(self, *args: Any, schemas: list[DataSchema], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["schema"].choices = [("", "Any schema"), *((s.name, s.label) for s in schemas)]

    def filters(self) -> dict[str, Any]:
        if not self.is_bound or not self.is_valid():
            return {}
        return {key: self.cleaned_data.get(key) or None for key in ("search", "kind", "schema")}


class AudienceForm(forms.Form):
    # Not required here: the audience service says what a name needs.
    name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


# --- Schemas -------------------------------------------------------------------------------------


@portal_page(capability="data.read")
@require_GET
def schema_list(request: HttpRequest) -> HttpResponse:
    return _schema_list_page(request)


def _schema_list_page(request: HttpRequest, *, create_form: SchemaCreateForm | None = None,
                      status: int = 200) -> HttpResponse:
    tenant = request.tenant
    rows = []
    for schema in _schemas(request):
        fields = list(schema.fields.all())
        rows.append({"schema": schema, "count": selectors.record_count(tenant=tenant, schema=schema),
                     "fields": len(fields), "links": list(schema.links.all())})
    can_manage = _can(request, "schemas.manage")
    return render(request, "portal/data/schemas.html", {
        "rows": rows, "total": sum(r["count"] for r in rows),
        "create_form": create_form or (SchemaCreateForm() if can_manage else None),
        "can_manage": can_manage, "role_label": _role_label(request),
    }, status=status)


@portal_page(capability="schemas.manage")
@require_POST
def schema_new(request: HttpRequest) -> HttpResponse:
    form = SchemaCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            schema = services.schema_create(
                tenant=request.tenant, by=request.user, name=data["name"], label=data["label"],
                description=data["description"], primary_key={"name": data["key_name"], "type": data["key_type"]})
        except ApplicationError as exc:
            service_error(form, exc, aliases=SchemaCreateForm.ALIASES)
        else:
            messages.success(request, f"Schema “{schema.label}” was created. Add its fields below.")
            return redirect("portal:schema-detail", schema_name=schema.name)
    return _schema_list_page(request, create_form=form, status=400)


def _schema_page(request: HttpRequest, schema: DataSchema, *, schema_form: SchemaEditForm | None = None,
                 field_form: FieldAddForm | None = None, edit_forms: dict[str, FieldEditForm] | None = None,
                 link_form: LinkAddForm | None = None, delete_form: SchemaDeleteForm | None = None,
                 row_error: tuple[str, str, str] | None = None, status: int = 200) -> HttpResponse:
    tenant = request.tenant
    schema = selectors.schema_get(tenant=tenant, name=schema.name)  # fresh fields and links
    can_manage = _can(request, "schemas.manage")
    all_schemas = _schemas(request)
    edit_forms = edit_forms or {}
    rows = []
    for field in schema.fields.all():
        form = edit_forms.get(field.name) or (FieldEditForm(field=field, schema=schema) if can_manage else None)
        rows.append({
            "field": field, "is_key": field.name == schema.primary_key, "default": _default_text(field),
            "form": form, "open": field.name in edit_forms,
            "error": row_error[2] if row_error and row_error[:2] == ("field", field.name) else None,
        })
    links = [{"link": link, "error": row_error[2] if row_error and row_error[:2] == ("link", link.name) else None}
             for link in schema.links.all()]
    incoming = [(other, link) for other in all_schemas for link in other.links.all()
                if link.target_id == schema.pk and other.pk != schema.pk]
    context = {
        "schema": schema, "rows": rows, "links": links, "incoming": incoming, "can_manage": can_manage,
        "count": selectors.record_count(tenant=tenant, schema=schema),
        "can_import": _can(request, "data.write"), "role_label": _role_label(request),
    }
    if can_manage:
        context.update({
            "schema_form": schema_form or SchemaEditForm(initial={"label": schema.label,
                                                                  "description": schema.description}),
            "field_form": field_form or FieldAddForm(),
            "link_form": link_form or LinkAddForm(schemas=all_schemas, initial={"source_field": "",
                                                                                "target_field": ""}),
            "delete_form": delete_form or SchemaDeleteForm(),
        })
    return render(request, "portal/data/schema.html", context, status=status)


def _status_of(exc: ApplicationError) -> int:
    return exc.status if exc.status in (400, 409) else 400


@portal_page(capability="data.read")
@require_GET
def schema_detail(request: HttpRequest, schema_name: str) -> HttpResponse:
    return _schema_page(request, _schema(request, schema_name))


@portal_page(capability="schemas.manage")
@require_POST
def schema_edit(request: HttpRequest, schema_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    form = SchemaEditForm(request.POST)
    if form.is_valid():
        try:
            services.schema_update(tenant=request.tenant, schema=schema, by=request.user,
                                   label=form.cleaned_data["label"], description=form.cleaned_data["description"])
        except ApplicationError as exc:
            service_error(form, exc)
            return _schema_page(request, schema, schema_form=form, status=_status_of(exc))
        messages.success(request, "The schema was saved.")
        return redirect("portal:schema-detail", schema_name=schema.name)
    return _schema_page(request, schema, schema_form=form, status=400)


@portal_page(capability="schemas.manage")
@require_POST
def schema_delete(request: HttpRequest, schema_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    form = SchemaDeleteForm(request.POST)
    form.is_valid()
    try:
        services.schema_delete(tenant=request.tenant, schema=schema, by=request.user,
                               force=bool(form.cleaned_data.get("force")))
    except ApplicationError as exc:
        form.add_error(None, explain(exc) + (" Tick the box to delete them too." if exc.code == "has_data" else ""))
        return _schema_page(request, schema, delete_form=form, status=_status_of(exc))
    messages.success(request, f"Schema “{schema.label}” was deleted.")
    return redirect("portal:data")


FIELD_ERROR_NEAR = {"values_do_not_fit": "type", "missing_values": "required", "builtin": "type",
                    "primary_key": "type", "in_use": "type"}


@portal_page(capability="schemas.manage")
@require_POST
def field_add(request: HttpRequest, schema_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    form = FieldAddForm(request.POST)
    if form.is_valid():
        try:
            field = services.field_add(tenant=request.tenant, schema=schema, by=request.user,
                                       name=form.cleaned_data["name"], **form.attributes())
        except ApplicationError as exc:
            service_error(form, exc, near=FIELD_ERROR_NEAR.get(exc.code))
            return _schema_page(request, schema, field_form=form, status=_status_of(exc))
        messages.success(request, f"Field “{field.name}” was added.")
        return redirect(reverse("portal:schema-detail", kwargs={"schema_name": schema.name}) + "#fields")
    return _schema_page(request, schema, field_form=form, status=400)


@portal_page(capability="schemas.manage")
@require_POST
def field_edit(request: HttpRequest, schema_name: str, field_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    field = selectors.field_get(tenant=request.tenant, schema=schema, name=field_name)
    form = FieldEditForm(request.POST, field=field, schema=schema)
    if form.is_valid():
        try:
            field = services.field_update(tenant=request.tenant, schema=schema, field=field, by=request.user,
                                          **form.attributes())
        except ApplicationError as exc:
            service_error(form, exc, near=FIELD_ERROR_NEAR.get(exc.code))
            return _schema_page(request, schema, edit_forms={field.name: form}, status=_status_of(exc))
        messages.success(request, f"Field “{field.name}” was saved.")
        return redirect(reverse("portal:schema-detail", kwargs={"schema_name": schema.name}) + "#fields")
    return _schema_page(request, schema, edit_forms={field.name: form}, status=400)


@portal_page(capability="schemas.manage")
@require_POST
def field_remove(request: HttpRequest, schema_name: str, field_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    field = selectors.field_get(tenant=request.tenant, schema=schema, name=field_name)
    try:
        services.field_remove(tenant=request.tenant, schema=schema, field=field, by=request.user)
    except ApplicationError as exc:
        return _schema_page(request, schema, row_error=("field", field.name, explain(exc)), status=_status_of(exc))
    messages.success(request, f"Field “{field.name}” and its values were removed.")
    return redirect(reverse("portal:schema-detail", kwargs={"schema_name": schema.name}) + "#fields")


@portal_page(capability="schemas.manage")
@require_POST
def link_add(request: HttpRequest, schema_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    form = LinkAddForm(request.POST, schemas=_schemas(request))
    if form.is_valid():
        data = form.cleaned_data
        try:
            link = services.link_create(
                tenant=request.tenant, schema=schema, by=request.user, name=data["name"], label=data["label"],
                target=data["target"], kind=data["kind"], source_field=data["source_field"],
                target_field=data["target_field"], reverse_name=data["reverse_name"] or None,
                reverse_label=data["reverse_label"])
        except ApplicationError as exc:
            service_error(form, exc)
            return _schema_page(request, schema, link_form=form, status=_status_of(exc))
        messages.success(request, f"Link “{link.name}” to {link.target.name} was created.")
        return redirect(reverse("portal:schema-detail", kwargs={"schema_name": schema.name}) + "#links")
    return _schema_page(request, schema, link_form=form, status=400)


@portal_page(capability="schemas.manage")
@require_POST
def link_remove(request: HttpRequest, schema_name: str, link_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    link = selectors.link_get(tenant=request.tenant, schema=schema, name=link_name)
    try:
        services.link_remove(tenant=request.tenant, schema=schema, link=link, by=request.user)
    except ApplicationError as exc:
        return _schema_page(request, schema, row_error=("link", link.name, explain(exc)), status=_status_of(exc))
    messages.success(request, f"Link “{link.name}” was removed.")
    return redirect(reverse("portal:schema-detail", kwargs={"schema_name": schema.name}) + "#links")


# --- Records -------------------------------------------------------------------------------------


def _columns(schema: DataSchema, limit: int) -> list[Field]:
    return [f for f in schema.fields.all() if f.name != schema.primary_key and f.type != FieldType.JSON][:limit]


@portal_page(capability="data.read")
@require_GET
def record_list(request: HttpRequest, schema_name: str) -> HttpResponse:
    schema = _schema(request, schema_name)
    form = RecordSearchForm(request.GET or None)
    search = filter_text = ""
    if form.is_bound and form.is_valid():
        search, filter_text = form.cleaned_data["q"].strip(), form.cleaned_data["filter"].strip()
    problems: list[dict[str, Any]] = []
    error = None
    try:
        records = selectors.record_list(tenant=request.tenant, schema=schema, search=search or None,
                                        filter=filter_text or None)
        page = Paginator(records, RECORDS_PER_PAGE).get_page(request.GET.get("page"))
    except ApplicationError as exc:  # the filter does not hold: say where
        error = exc.message
        problems = [p for p in (exc.fields or {}).get("filter", []) if isinstance(p, dict)]
        page = Paginator([], RECORDS_PER_PAGE).get_page(1)
    columns = _columns(schema, BROWSER_COLUMNS)
    rows = [{"record": record, "cells": [display(f.type, record.attributes.get(f.name)) for f in columns]}
            for record in page]
    query = {k: v for k, v in (("q", search), ("filter", filter_text)) if v}
    context = {"schema": schema, "form": form, "page": page, "rows": rows, "columns": columns, "error": error,
               "problems": problems, "query": query, "is_filtered": bool(query),
               "can_import": _can(request, "data.write")}
    template = "portal/data/_records.html" if _is_htmx(request) else "portal/data/records.html"
    # htmx swaps 2xx answers only: the fragment that says what is wrong with the filter is a 200.
    response = render(request, template, context, status=400 if error and not _is_htmx(request) else 200)
    patch_vary_headers(response, ["HX-Request"])
    return response


@portal_page(capability="data.read")
@require_GET
def record_detail(request: HttpRequest, schema_name: str, key: str) -> HttpResponse:
    tenant = request.tenant
    schema = _schema(request, schema_name)
    record = selectors.record_get(tenant=tenant, schema=schema, key=key)
    values = [{"field": f, "value": display(f.type, record.attributes.get(f.name)),
               "is_key": f.name == schema.primary_key} for f in schema.fields.all()]
    links = []
    for link in schema.links.all():
        value = record.attributes.get(link.source_field)
        entry: dict[str, Any] = {"link": link, "value": value}
        if value is not None and link.kind == LinkKind.MANY_TO_ONE:
            try:
                target = selectors.record_get(tenant=tenant, schema=link.target, key=str(value))
            except NotFound:
                entry["missing"] = True
            else:
                entry["url"] = reverse("portal:record-detail", kwargs={"schema_name": link.target.name,
                                                                       "key": target.key})
        elif value is not None:
            condition = json.dumps({"field": link.target_field, "op": "eq", "value": value})
            entry["count"] = selectors.record_list(tenant=tenant, schema=link.target, filter=condition).count()
            entry["url"] = reverse("portal:record-list", kwargs={"schema_name": link.target.name}) + \
                "?" + urlencode({"filter": condition})
        links.append(entry)
    consent = list(profile_selectors.consent_history(tenant=tenant, key=record.key)[:20]) \
        if schema.name == PROFILE else None
    return render(request, "portal/data/record.html", {
        "schema": schema, "record": record, "values": values, "links": links, "consent": consent,
    })


# --- Imports -------------------------------------------------------------------------------------


@dataclass
class Progress:
    percent: int
    phase: str
    finished: bool


def import_progress_of(job: ImportJob) -> Progress:
    """How far an import is. The worker reports at the end of each phase (read, checked, written),
    so the bar moves by phase, each labelled with what is being done."""
    if job.status == ImportStatus.SUCCEEDED:
        return Progress(100, "Done", True)
    if job.status == ImportStatus.FAILED:
        return Progress(100, "Failed", True)
    if job.status == ImportStatus.PENDING:
        return Progress(0, "Waiting for a worker to start", False)
    if not job.rows_read:
        return Progress(10, "Reading the file", False)
    if not (job.rows_valid or job.rows_rejected):
        return Progress(40, f"Checking {job.rows_read:,} rows", False)
    return Progress(75, f"Writing {job.rows_valid:,} valid rows", False)


def _imports_page(request: HttpRequest, schema: DataSchema, *, form: ImportForm | None = None,
                  status: int = 200) -> HttpResponse:
    page = Paginator(imports.import_list(tenant=request.tenant, schema=schema), IMPORTS_PER_PAGE).get_page(
        request.GET.get("page"))
    can_import = _can(request, "data.write")
    rows = [{"job": job, "progress": import_progress_of(job)} for job in page]
    return render(request, "portal/data/imports.html", {
        "schema": schema, "page": page, "rows": rows, "form": form or (ImportForm() if can_import else None),
        "can_import": can_import, "role_label": _role_label(request),
        "fields": list(schema.fields.all()),
    }, status=status)


@portal_page(capability="data.read")
@require_GET
def import_list(request: HttpRequest, schema_name: str) -> HttpResponse:
    return _imports_page(request, imports.import_schema_get(tenant=request.tenant, name=schema_name))


@csrf_exempt  # checked below, once the upload handler is in place (Django's documented way)
@portal_page(capability="data.write")
@require_POST
def import_upload(request: HttpRequest, schema_name: str) -> HttpResponse:
    """Upload a file and start its import. The file is written to the imports directory chunk by
    chunk as it arrives (never held in memory), then handed to the import service."""
    schema = imports.import_schema_get(tenant=request.tenant, name=schema_name)
    handler = ImportUploadHandler(request, tenant_id=request.tenant.pk)
    request.upload_handlers = [handler]
    try:
        response = _import_upload_checked(request, schema)
    except ApplicationError as exc:  # the upload handler refused the file (too large)
        handler.discard()
        form = ImportForm(data={"mode": ImportMode.UPSERT}, files={})
        form.is_valid()
        form.errors["file"] = form.error_class([exc.message])
        return _imports_page(request, schema, form=form, status=400)
    except BaseException:
        handler.discard()
        raise
    if response.status_code != 302:  # refused: the stored upload goes
        handler.discard()
    return response


@csrf_protect
def _import_upload_checked(request: HttpRequest, schema: DataSchema) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _imports_page(request, schema, form=form, status=400)
    data = form.cleaned_data
    try:
        job = imports.import_create(tenant=request.tenant, schema=schema, by=request.user, file=data["file"],
                                    mode=data["mode"], format=data["format"] or None,
                                    delimiter=data["delimiter"] or None, encoding=data["encoding"] or None)
    except ApplicationError as exc:
        service_error(form, exc)
        return _imports_page(request, schema, form=form, status=400)
    messages.success(request, f"“{job.original_name}” is being imported into {schema.label}.")
    return redirect("portal:import-detail", schema_name=schema.name, import_id=job.pk)


def _import_job(request: HttpRequest, schema_name: str, import_id: int) -> tuple[DataSchema, ImportJob]:
    schema = imports.import_schema_get(tenant=request.tenant, name=schema_name)
    return schema, imports.import_get(tenant=request.tenant, schema=schema, id=import_id)


@portal_page(capability="data.read")
@require_GET
def import_detail(request: HttpRequest, schema_name: str, import_id: int) -> HttpResponse:
    schema, job = _import_job(request, schema_name, import_id)
    return render(request, "portal/data/import.html", {
        "schema": schema, "job": job, "progress": import_progress_of(job)})


@portal_page(capability="data.read")
@require_GET
def import_progress(request: HttpRequest, schema_name: str, import_id: int) -> HttpResponse:
    """The progress panel alone: what the import page polls until the job has finished."""
    schema, job = _import_job(request, schema_name, import_id)
    response = render(request, "portal/data/_import_progress.html", {
        "schema": schema, "job": job, "progress": import_progress_of(job)})
    response["Cache-Control"] = "no-store"
    return response


@portal_page(capability="data.read")
@require_GET
def import_rejects(request: HttpRequest, schema_name: str, import_id: int) -> FileResponse:
    _schema_obj, job = _import_job(request, schema_name, import_id)
    return FileResponse(imports.import_rejects_open(job=job), as_attachment=True,
                        filename=f"import-{job.pk}-rejects.csv", content_type="text/csv; charset=utf-8")


# --- Audiences -----------------------------------------------------------------------------------


@portal_page(capability="data.read")
@require_GET
def audience_list(request: HttpRequest) -> HttpResponse:
    schemas = _schemas(request)
    filter_form = AudienceFilterForm(request.GET or None, schemas=schemas, auto_id="filter_%s")
    filters = filter_form.filters()
    page = Paginator(audience_selectors.audience_list(tenant=request.tenant, filters=filters),
                     AUDIENCES_PER_PAGE).get_page(request.GET.get("page"))
    context = {"page": page, "filter_form": filter_form, "is_filtered": any(filters.values()),
               "role_label": _role_label(request), "can_write": _can(request, "audiences.write"),
               "query": {k: v for k, v in filters.items() if v}}
    template = "portal/data/_audiences.html" if _is_htmx(request) else "portal/data/audiences.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@dataclass
class Builder:
    """The state of the audience builder: the schema (dimension), rules or JSON, and a message
    about the builder itself."""

    schemas: dict[str, DataSchema]
    catalog: dict[str, rb.SchemaInfo]
    schema: str
    mode: str = "rules"
    root: rb.Rule | None = None
    json_text: str = ""
    message: str = ""
    schema_locked: bool = False

    @property
    def info(self) -> rb.SchemaInfo:
        return self.catalog[self.schema]

    def fit(self) -> None:
        if self.root is not None:
            rb.fit(self.root, self.info, self.catalog)

    def load(self, tree: Any) -> None:
        """Show `tree` as rules if the builder can, else as JSON."""
        try:
            self.root = rb.from_filter(tree)
            self.mode = "rules"
            self.fit()
        except rb.NotRepresentable as exc:
            self.root = rb.empty_root()
            self.mode = "json"
            self.message = f"The rule builder cannot show this filter ({exc}): it is edited as JSON."
        self.json_text = json.dumps(tree if tree is not None else {}, indent=2, ensure_ascii=False)

    def filter(self) -> tuple[Any, dict[str, str]]:
        """(filter tree, rule paths by JSON path); ApplicationError for JSON that does not parse."""
        if self.mode == "json":
            text = self.json_text.strip()
            if not text:
                return {}, {}
            try:
                return json.loads(text), {}
            except json.JSONDecodeError as exc:
                message = f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
                raise ApplicationError(f"The filter is not valid JSON: {exc.msg}.", code="invalid_filter",
                                       fields={"filter": [{"path": "", "message": message}]}) from None
        assert self.root is not None
        return rb.to_filter(self.root, self.catalog)


def _builder(request: HttpRequest, *, schema: str | None = None, locked: bool = False) -> Builder:
    schemas = {s.name: s for s in _schemas(request)}
    if not schemas:
        raise Http404("This workspace has no schema.")
    name = schema if schema in schemas else (PROFILE if PROFILE in schemas else next(iter(schemas)))
    return Builder(schemas=schemas, catalog=rb.catalog_of(schemas.values()), schema=name, root=rb.empty_root(),
                   schema_locked=locked)


def _builder_from_post(request: HttpRequest, *, audience: Audience | None = None) -> Builder:
    data = request.POST
    if audience is not None:
        builder = _builder(request, schema=audience.schema.name, locked=True)
    else:
        builder = _builder(request, schema=data.get("schema"))
    builder.mode = "json" if data.get("mode") == "json" else "rules"
    builder.json_text = data.get("filter_json", "")[:200_000]
    previous = data.get("previous_schema")
    builder.root = rb.from_form(data) if not previous or previous == builder.schema else rb.empty_root()
    builder.fit()
    action = data.get("action", "")
    if action == "to-json":
        builder.json_text = json.dumps(builder.filter()[0], indent=2, ensure_ascii=False)
        builder.mode = "json"
    elif action == "to-rules":
        try:
            tree, _ = builder.filter()
        except ApplicationError as exc:
            builder.message = exc.message
        else:
            try:
                root = rb.from_filter(tree)
            except rb.NotRepresentable as exc:
                builder.message = f"The rule builder cannot show this filter ({exc}): keep editing it as JSON."
            else:
                builder.root, builder.mode = root, "rules"
                builder.fit()
    elif action.partition(":")[0] in ("add-cond", "add-group", "add-link", "remove"):
        builder.message = rb.apply_action(builder.root, action, builder.info, builder.catalog) or ""
    return builder


def live_result(request: HttpRequest, builder: Builder) -> dict[str, Any]:
    """The live panel: how many records the rules select now and a few of them, or why the rules
    do not hold (each problem with its path); the filter JSON either way."""
    result: dict[str, Any] = {"problems": [], "error": None, "count": None, "sample": [], "json": builder.json_text}
    try:
        tree, paths = builder.filter()
    except ApplicationError as exc:
        result.update(error=exc.message, problems=(exc.fields or {}).get("filter", []))
        return result
    result["json"] = json.dumps(tree, indent=2, ensure_ascii=False)
    schema = builder.schemas[builder.schema]
    try:
        found = selectors.records_query(tenant=request.tenant, schema=schema, tree=tree, sample_size=LIVE_SAMPLE)
    except FilterError as exc:
        result.update(error=exc.message, problems=exc.problems)
        if builder.mode == "rules" and builder.root is not None:
            rb.place_problems(builder.root, exc.problems, paths)
        return result
    except ApplicationError as exc:
        result.update(error=exc.message, problems=(exc.fields or {}).get("filter", []))
        return result
    columns = _columns(schema, SAMPLE_COLUMNS - 1)
    result["count"] = found["count"]
    result["sample"] = [{"key": row["key"], "cells": [display(f.type, row["values"].get(f.name)) for f in columns]}
                        for row in found["sample"]]
    return result


def _builder_context(request: HttpRequest, builder: Builder, **extra: Any) -> dict[str, Any]:
    builder.fit()
    live = live_result(request, builder)  # before rendering: it pins the problems on the rules
    return {"builder": builder, "live": live, "schema_choices": [(s.name, s.label) for s in builder.schemas.values()],
            "matches": rb.MATCHES, "havings": rb.HAVINGS, "count_ops": rb.COUNT_OPS,
            "builder_url": reverse("portal:audience-builder"), "count_url": reverse("portal:audience-count"), **extra}


def _builder_page(request: HttpRequest, builder: Builder, form: AudienceForm, *, audience: Audience | None = None,
                  status: int = 200) -> HttpResponse:
    return render(request, "portal/data/audience_builder.html", _builder_context(
        request, builder, form=form, audience=audience), status=status)


def _save_audience(request: HttpRequest, builder: Builder, form: AudienceForm, *, kind: str,
                   audience: Audience | None = None) -> HttpResponse:
    if not form.is_valid():
        return _builder_page(request, builder, form, audience=audience, status=400)
    data = form.cleaned_data
    try:
        tree, _ = builder.filter()
        if audience is None:
            audience, _report = audience_services.audience_create(
                tenant=request.tenant, name=data["name"], kind=kind, schema=builder.schemas[builder.schema],
                filter=tree, description=data["description"], by=request.user)
            verb = "saved" if kind == AudienceKind.DYNAMIC else "frozen"
        else:
            audience = audience_services.audience_update(tenant=request.tenant, audience=audience, by=request.user,
                                                         name=data["name"], description=data["description"],
                                                         filter=tree)
            verb = "saved"
    except ApplicationError as exc:
        if isinstance(exc, FilterError):
            form.add_error(None, "The rules do not hold: fix the problems shown on them.")
        else:
            service_error(form, exc)
        return _builder_page(request, builder, form, audience=audience, status=_status_of(exc))
    what = "a saved query" if audience.kind == AudienceKind.DYNAMIC else "a static list"
    messages.success(request, f"Audience “{audience.name}” was {verb} as {what} of {audience.count:,} records.")
    return redirect("portal:audience-detail", audience_id=audience.pk)


@portal_page(capability="audiences.write")
@require_http_methods(["GET", "POST"])
def audience_new(request: HttpRequest) -> HttpResponse:
    """The audience builder. Without JavaScript every button posts the whole form here, which
    answers the page again; with htmx the rules and the live count are swapped in place."""
    if request.method == "GET":
        builder = _builder(request, schema=request.GET.get("schema"))
        return _builder_page(request, builder, AudienceForm())
    builder = _builder_from_post(request)
    form = AudienceForm(request.POST)
    action = request.POST.get("action", "")
    if action in ("save-dynamic", "save-static"):
        kind = AudienceKind.DYNAMIC if action == "save-dynamic" else AudienceKind.STATIC
        return _save_audience(request, builder, form, kind=kind)
    return _builder_page(request, builder, AudienceForm(request.POST))


@portal_page(capability="audiences.write")
@require_http_methods(["GET", "POST"])
def audience_edit(request: HttpRequest, audience_id: int) -> HttpResponse:
    audience = audience_selectors.audience_get(tenant=request.tenant, id=audience_id)
    if audience.is_static:
        messages.error(request, "A static audience is frozen: build a new one.")
        return redirect("portal:audience-detail", audience_id=audience.pk)
    if request.method == "GET":
        builder = _builder(request, schema=audience.schema.name, locked=True)
        builder.load(audience.filter)
        form = AudienceForm(initial={"name": audience.name, "description": audience.description})
        return _builder_page(request, builder, form, audience=audience)
    builder = _builder_from_post(request, audience=audience)
    form = AudienceForm(request.POST)
    if request.POST.get("action") == "save-dynamic":
        return _save_audience(request, builder, form, kind=AudienceKind.DYNAMIC, audience=audience)
    return _builder_page(request, builder, form, audience=audience)


def _audience_for_fragment(request: HttpRequest) -> Audience | None:
    audience_id = request.POST.get("audience")
    if not audience_id:
        return None
    audience = audience_selectors.audience_get(tenant=request.tenant, id=audience_id)
    if audience.is_static:
        raise Http404("No such audience.")
    return audience


@portal_page(capability="audiences.write")
@require_POST
def audience_builder(request: HttpRequest) -> HttpResponse:
    """The rules again after a structural change (a rule added or removed, a field, operator or
    group changed, rules to JSON and back), with the live panel swapped out of band."""
    builder = _builder_from_post(request, audience=_audience_for_fragment(request))
    return render(request, "portal/data/_builder.html", _builder_context(request, builder, oob=True))


@portal_page(capability="audiences.write")
@require_POST
def audience_count(request: HttpRequest) -> HttpResponse:
    """The live panel alone: what typing in a value refreshes."""
    builder = _builder_from_post(request, audience=_audience_for_fragment(request))
    live = live_result(request, builder)
    # The problems shown on the rules are brought up to date too (out of band).
    rules = builder.root.walk() if builder.mode == "rules" and builder.root is not None else []
    return render(request, "portal/data/_live.html", {"live": live, "rules": rules})


@portal_page(capability="data.read")
@require_GET
def audience_detail(request: HttpRequest, audience_id: int) -> HttpResponse:
    tenant = request.tenant
    audience = audience_selectors.audience_get(tenant=tenant, id=audience_id)
    schema = selectors.schema_get(tenant=tenant, name=audience.schema.name)
    error = None
    try:
        preview = audience_selectors.audience_preview(tenant=tenant, audience=audience, sample_size=DETAIL_SAMPLE)
    except ApplicationError as exc:  # a saved query the schema no longer satisfies
        error, preview = explain(exc), {"count": None, "sample": []}
    columns = _columns(schema, BROWSER_COLUMNS - 1)
    sample = [{"key": row["key"], "cells": [display(f.type, row["values"].get(f.name)) for f in columns]}
              for row in preview["sample"]]
    rules = None
    if audience.filter is not None:
        try:
            catalog = rb.catalog_of(_schemas(request))
            rules = rb.describe(rb.from_filter(audience.filter), schema.name, catalog)
        except rb.NotRepresentable:
            rules = None
    return render(request, "portal/data/audience.html", {
        "audience": audience, "schema": schema, "preview": preview, "error": error, "columns": columns,
        "sample": sample, "rules": rules, "can_write": _can(request, "audiences.write"),
        "filter_json": json.dumps(audience.filter, indent=2, ensure_ascii=False) if audience.filter is not None
        else None,
    })


@portal_page(capability="audiences.write")
@require_POST
def audience_refresh(request: HttpRequest, audience_id: int) -> HttpResponse:
    audience = audience_selectors.audience_get(tenant=request.tenant, id=audience_id)
    try:
        audience = audience_services.audience_refresh(tenant=request.tenant, audience=audience, by=request.user)
    except ApplicationError as exc:
        messages.error(request, explain(exc))
    else:
        messages.success(request, f"Recounted: {audience.count:,} records.")
    return redirect("portal:audience-detail", audience_id=audience.pk)


@portal_page(capability="audiences.write")
@require_POST
def audience_delete(request: HttpRequest, audience_id: int) -> HttpResponse:
    audience = audience_selectors.audience_get(tenant=request.tenant, id=audience_id)
    try:
        audience_services.audience_delete(tenant=request.tenant, audience=audience, by=request.user)
    except ApplicationError as exc:
        messages.error(request, explain(exc))
        return redirect("portal:audience-detail", audience_id=audience.pk)
    messages.success(request, f"Audience “{audience.name}” was deleted.")
    return redirect("portal:audiences")


@portal_page(capability="data.read")
@require_GET
def audience_export(request: HttpRequest, audience_id: int) -> StreamingHttpResponse:
    """The members as CSV (cells a spreadsheet would run as formulas are neutralised)."""
    tenant = request.tenant
    audience = audience_selectors.audience_get(tenant=tenant, id=audience_id)
    columns = [f.name for f in selectors.field_list(tenant=tenant, schema=audience.schema)]
    try:
        rows = audience_selectors.audience_member_rows(tenant=tenant, audience=audience)
    except ApplicationError as exc:
        messages.error(request, explain(exc))
        return redirect("portal:audience-detail", audience_id=audience.pk)
    response = StreamingHttpResponse(csv_lines(columns, rows), content_type="text/csv; charset=utf-8")
    filename = slugify(audience.name) or f"audience-{audience.pk}"
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response
