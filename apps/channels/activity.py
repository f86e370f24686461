"""The base of the channel activities (apps/activities/email.py, sms.py, push.py, file_export.py):
config schema, validation of the content against the schema at publish, and an execution that
opens a delivery, lets senders work through it, and ends with the ports `sent`, `excluded` and
`failed` (see apps/channels/sending.py for how exactly-once holds)."""

from __future__ import annotations

import copy
import datetime as dt
import os
from typing import Any, ClassVar

from psycopg import sql

from apps.activities.base import (
    Activity,
    Done,
    ExecutionContext,
    NodeError,
    Population,
    Problem,
    ValidationContext,
    Wait,
    first_population,
)
from apps.approvals import gate
from apps.channels import content as content_module
from apps.channels import personalization, sending
from apps.channels.models import MAX_RATE_PER_SECOND, Delivery, DeliveryStatus
from apps.schemas.models import DataSchema, Field

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
SAMPLES = 3


def poll_seconds() -> float:
    return float(os.environ.get("CHANNELS_POLL_SECONDS", "5"))


def channel_config_schema(channel: str) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["content"],
        "properties": {
            "content": copy.deepcopy(content_module.SCHEMAS[channel]),
            "address_field": {"type": "string", "description": "field holding the address (default per channel)"},
            "consent_field": {"type": ["string", "null"],
                              "description": "boolean field that must not be false; null: no consent check"},
        },
    }
    schema["properties"]["approval"] = {
        "type": "object", "additionalProperties": False, "properties": copy.deepcopy(gate.SETTINGS_PROPERTIES),
        "description": "present: an approver signs off the count, sample recipients and rendered samples before "
                       "anything is sent (apps/approvals); a change afterwards voids the approval"}
    if channel != "file":
        schema["properties"].update({
            "send_without_confirmation": {
                "type": "boolean", "default": False,
                "description": "one-off campaigns started by hand: send as soon as the delivery is prepared, without "
                               "waiting for someone to confirm the counts (recurring, scheduled and triggered runs "
                               "never wait)"},
            "rate_per_second": {"type": "integer", "minimum": 1, "maximum": MAX_RATE_PER_SECOND,
                                "description": "throttling of this delivery (the tenant's limit applies too)"},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000},
            "window": {"type": "object", "additionalProperties": False, "required": ["start", "end"],
                       "description": "send only between these local times (tenant's time zone); recipients not "
                                      "reached when it closes are excluded as window_closed",
                       "properties": {"start": {"type": "string", "pattern": HHMM},
                                      "end": {"type": "string", "pattern": HHMM}}},
        })
    return schema


def run_is_one_off(run: Any) -> bool:
    """A run of a one-off campaign started by hand (docs/channels.md, "Send confirmation"): not a
    test, not started by a schedule or an API trigger, and its (frozen) Scheduler is neither
    recurring nor waiting for API triggers ("Run now" of a recurring campaign does not count)."""
    from apps.campaigns.models import RunTrigger
    from apps.campaigns.schedules import RECURRING_MODES, start_spec

    if run.is_test or run.trigger != RunTrigger.MANUAL:
        return False
    found = start_spec(run.graph or {})
    mode = (found[1].get("mode") if found else None) or "asap"
    return mode not in RECURRING_MODES and mode != "api"


class ChannelActivity(Activity):
    channel: ClassVar[str] = ""
    group = "channels"
    is_channel = True
    inputs = ("in",)
    outputs = ("sent", "excluded", "failed")

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        shape = next((s for s in (ctx.inputs or []) if not s.is_token), None)
        dimension = shape.dimension if shape is not None else ctx.dimension
        schema = ctx.schemas.get(dimension)
        if schema is None:
            return [ctx.problem(f"Unknown schema {dimension!r}.", "config")]
        fields = {f.name for f in Field.objects.filter(schema=schema)}
        row_columns = {c.name for c in shape.columns} if shape is not None else None
        problems = [
            ctx.problem((f"line {p.line}: " if p.line else "") + p.message,
                        f"config.content.{p.path}" if p.path else "config.content")
            for p in content_module.content_problems(self.channel, config["content"], fields=fields,
                                                     variables=set(ctx.variables), row_columns=row_columns)
        ]
        for name in ("address_field", "consent_field"):
            if config.get(name) and config[name] not in fields:
                problems.append(ctx.problem(f"{dimension} has no field {config[name]!r}.", f"config.{name}"))
        if "approval" in config:
            problems += gate.validate_settings(config["approval"], ctx, path="config.approval")
        window = config.get("window")
        if window and window["start"] == window["end"]:
            problems.append(ctx.problem("The window must not start when it ends.", "config.window"))
        return problems

    # Execution ----------------------------------------------------------------------------------

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done | Wait:
        population = first_population(inputs)
        if population.is_token:
            raise NodeError("A channel activity needs a population of recipients on its input.")
        schema = DataSchema.objects.filter(name=population.dimension or ctx.dimension).first()
        if schema is None:
            raise NodeError(f"The schema {population.dimension!r} no longer exists.")
        if ctx.is_test:
            return self._dry_run(config, ctx, population, schema)
        delivery_id = ctx.state.get("delivery")
        if delivery_id is None and "approval" in config:
            decided = self._approval(config, ctx, population, schema)
            if decided is not None:
                return decided
        if delivery_id is None:
            delivery = sending.delivery_open(
                tenant=ctx.tenant, run=ctx.run, node_id=ctx.node_id, channel=self.channel, schema=schema,
                population=population, config=config, variables=ctx.variables, now=ctx.now)
            counts = sending.delivery_counts(delivery)
            ctx.log(f"Delivery {delivery.pk}: {counts['targeted']} targeted, {counts['pending']} to send, "
                    f"{counts['excluded']} excluded.", delivery=delivery.pk, excluded=counts["excluded_by_reason"])
            if self.requires_confirmation(config, ctx):
                return self._await_confirmation(delivery, ctx, counts)
            return self.begin(delivery, ctx, population)
        delivery = Delivery.objects.get(pk=delivery_id)
        if delivery.status == DeliveryStatus.AWAITING_CONFIRMATION:  # woken early: wait on
            return self._confirmation_wait(delivery, ctx, sending.delivery_counts(delivery))
        return self.follow(delivery, ctx, population)

    def requires_confirmation(self, config: dict[str, Any], ctx: ExecutionContext) -> bool:
        """Whether the prepared delivery waits for someone to confirm it before anything is sent:
        live runs of one-off campaigns started by hand, unless `send_without_confirmation`.
        File exports only write a file to download, so they never wait."""
        if ctx.is_test or self.channel == "file" or config.get("send_without_confirmation"):
            return False
        return run_is_one_off(ctx.run)

    def _await_confirmation(self, delivery: Delivery, ctx: ExecutionContext, counts: dict[str, Any]) -> Wait:
        delivery.status = DeliveryStatus.AWAITING_CONFIRMATION
        delivery.counts = counts
        delivery.save(update_fields=["status", "counts"])
        return self._confirmation_wait(delivery, ctx, counts)

    def _confirmation_wait(self, delivery: Delivery, ctx: ExecutionContext, counts: dict[str, Any]) -> Wait:
        # No wake-up time: only a decision (apps.channels.services.delivery_confirm / _cancel) wakes it.
        return Wait(until=None, state={**ctx.state, "delivery": delivery.pk},
                    reason=f"Waiting for confirmation of delivery {delivery.pk}: {counts['pending']} to send, "
                           f"{counts['excluded']} excluded.")

    def _approval(self, config: dict[str, Any], ctx: ExecutionContext, population: Population,
                  schema: DataSchema) -> Done | Wait | None:
        """Wait behind an approval of what would be sent (count, sample recipients, rendered
        samples); None once approved, an empty Done (nothing sent, no port) when rejected."""
        _, keys = sending.classify_counts(tenant=ctx.tenant, schema=schema, population=population,
                                          channel=self.channel, config=config)
        samples = self._samples(config, ctx, population, schema, keys)
        content = config["content"]
        headline = content.get("subject") or content.get("title") or content.get("text", "")[:60] or self.label
        result = gate.approval_gate(ctx, population=population, settings=config["approval"],
                                    title=f"Send {self.label.lower()} “{headline}”",
                                    content={"content": content, "samples": samples})
        if result.wait is not None:
            return result.wait
        if not result.is_approved:
            ctx.log("Not approved: nothing is sent.", level="warning")
            return Done({}, summary={"approved": False})
        return None

    def begin(self, delivery: Delivery, ctx: ExecutionContext, population: Population) -> Done | Wait:
        return self.follow(delivery, ctx, population)

    def follow(self, delivery: Delivery, ctx: ExecutionContext, population: Population) -> Done | Wait:
        state = {**ctx.state, "delivery": delivery.pk}
        sending.close_window(delivery, ctx.now)
        left = sending.remaining(delivery)
        if left:
            if delivery.window_starts_at and ctx.now < delivery.window_starts_at:
                return Wait(until=delivery.window_starts_at, state=state,
                            reason=f"Waiting for the send window ({left} to send).")
            if sending.sender_is_stale(delivery, ctx.now):
                sending.kick_sender(delivery)
            return Wait(until=ctx.now + dt.timedelta(seconds=poll_seconds()), state=state,
                        reason=f"Sending: {left} left.")
        counts = sending.delivery_counts(delivery)
        delivery.status = DeliveryStatus.DONE if delivery.status == DeliveryStatus.SENDING else delivery.status
        delivery.counts = counts
        delivery.finished_at = ctx.now
        delivery.save(update_fields=["status", "counts", "finished_at"])
        outputs = sending.output_populations(delivery, population, ctx.store)
        return Done(outputs, summary={"delivery": delivery.pk, **counts})

    def _dry_run(self, config: dict[str, Any], ctx: ExecutionContext, population: Population,
                 schema: DataSchema) -> Done:
        """Test mode: count who would receive what and render samples; write and send nothing
        (beyond the node's own working tables)."""
        counts, sample_keys = sending.classify_counts(tenant=ctx.tenant, schema=schema, population=population,
                                                      channel=self.channel, config=config)
        samples = self._samples(config, ctx, population, schema, sample_keys)
        eligible = counts.get("eligible", 0)
        excluded = {reason: n for reason, n in counts.items() if reason != "eligible"}
        ctx.log(f"Test mode: {eligible} would be sent, {sum(excluded.values())} excluded; nothing sent.",
                excluded=excluded)
        outputs = self._dry_outputs(config, ctx, population, schema)
        return Done(outputs, summary={"test_mode": True, "targeted": eligible + sum(excluded.values()),
                                      "would_send": eligible, "excluded_by_reason": excluded, "samples": samples})

    def _samples(self, config: dict[str, Any], ctx: ExecutionContext, population: Population, schema: DataSchema,
                 keys: list[str]) -> list[dict[str, Any]]:
        from apps.campaigns.populations import table_ident

        if not keys:
            return []
        columns = sql.SQL("").join(sql.SQL(", p.{}").format(sql.Identifier(c.name)) for c in population.columns)
        statement = sql.SQL(
            "SELECT DISTINCT ON (p.key) p.key, r.attributes{columns} FROM {table} p LEFT JOIN schemas_record r "
            "ON r.tenant_id = %s AND r.schema_id = %s AND r.key = p.key WHERE p.key = ANY(%s) ORDER BY p.key"
        ).format(columns=columns, table=table_ident(population.table))
        rows = ctx.store.execute(statement, [ctx.tenant.pk, schema.pk, keys[:SAMPLES]]).fetchall()
        samples = []
        for key, attributes, *values in rows:
            row = dict(zip([c.name for c in population.columns], values, strict=True))
            context = personalization.message_context(record=sending._json(attributes), dimension=schema.name, row=row,
                                                      variables=ctx.variables, campaign=ctx.campaign.name,
                                                      message={"id": "test-mode"})
            try:
                rendered = content_module.render_content(self.channel, config["content"], context)
            except personalization.RenderError as exc:
                rendered = {"error": str(exc)}
            samples.append({"key": key, "rendered": rendered})
        return samples

    def _dry_outputs(self, config: dict[str, Any], ctx: ExecutionContext, population: Population,
                     schema: DataSchema) -> dict[str, Population]:
        from apps.campaigns.populations import table_ident

        statement, params = sending.classified(tenant=ctx.tenant, schema=schema, population=population,
                                               channel=self.channel, config=config)
        columns = sql.SQL("").join(sql.SQL(", p.{}").format(sql.Identifier(c.name)) for c in population.columns)
        outputs = {}
        for port, status in (("sent", "pending"), ("excluded", "excluded")):
            select = sql.SQL("SELECT DISTINCT ON (p.key) p.key{columns} FROM {table} p JOIN ({classified}) x "
                             "ON x.key = p.key WHERE x.status = %s ORDER BY p.key").format(
                columns=columns, table=table_ident(population.table), classified=statement)
            outputs[port] = ctx.store.create(port, select, [*params, status], columns=population.columns,
                                             dimension=population.dimension)
        outputs["failed"] = ctx.store.create("failed", sql.SQL("SELECT p.key{columns} FROM {table} p WHERE false")
                                             .format(columns=columns, table=table_ident(population.table)),
                                             columns=population.columns, dimension=population.dimension)
        return outputs

