"""Content and Liquid personalization: validation with lines, rendering limits, injection
payloads, preview for a chosen profile, proofs to real servers on loopback."""

from __future__ import annotations

import pytest

from apps.channels import content, personalization
from apps.profiles.services import profile_upsert
from tests.channels.sinks import SmtpSink

FIELDS = {"id", "email", "first_name", "country", "birth_date"}


def problems(source, **kwargs):
    return [(p.line, p.message) for p in personalization.check_template(source, path="x", **kwargs)]


def test_syntax_errors_come_with_their_line():
    assert problems("Hello\n{% if profile.first_name %}\nyou") == [
        (2, "Syntax error: expected tag endif, found end of expression.")]
    assert problems("a\nb\n{{ profile.first_name | }}\n") == [(3, "Syntax error: expected word, found end of expression.")]
    assert problems("a\n{% iff x %}")[0][0] == 2


def test_unknown_fields_variables_names_and_filters_are_reported():
    found = problems("{{ profile.first_name }}\n{{ profile.shoe_size }}\n{{ vars.promo }} {{ vars.nope }}\n"
                     "{{ secret }}\n{{ profile.first_name | shout }}\n{% assign n = 1 %}{{ n }}"
                     "{% for x in row.items %}{{ x.name }}{% endfor %}",
                     fields=FIELDS, variables={"promo"})
    assert found == [(5, "Unknown filter 'shout'."), (2, "Unknown field profile.shoe_size."),
                     (3, "Unknown variable vars.nope."),
                     (4, "Unknown name 'secret': use one of profile, record, row, vars, campaign, message.")]


def test_rendering_uses_filters_for_defaults_dates_and_numbers():
    context = personalization.message_context(
        record={"first_name": "", "birth_date": "1990-04-05"}, row={"points": 1234.5678, "items": [{"n": "a"}]},
        variables={"promo": "SPRING"})
    source = ("{{ profile.first_name | default: 'friend' }} {{ profile.birth_date | date: '%d/%m/%Y' }} "
              "{{ row.points | round: 2 }} {% for i in row.items %}{{ i.n }}{% endfor %} {{ vars.promo | downcase }}")
    assert personalization.render(source, context) == "friend 05/04/1990 1234.57 a spring"


@pytest.mark.parametrize("payload", [
    "{{ 7 | times: 7 }}", "{% raw %}{{ x }}{% endraw %}", "{% include 'secrets' %}", "<script>alert(1)</script>",
    "{{ profile.__class__ }}", "${7*7}", "{{''.__class__.__mro__}}",
])
def test_injection_payloads_in_data_render_inert(payload):
    context = personalization.message_context(record={"first_name": payload})
    assert personalization.render("Hi {{ profile.first_name }}", context) == f"Hi {payload}"
    html = personalization.render("<p>Hi {{ profile.first_name }}</p>", context, html=True)
    assert "<script>" not in html and "Hi " in html


@pytest.mark.parametrize("source", [
    "{{ profile.__class__ }}{{ profile.__dict__ }}{{ vars.__init__.__globals__ }}",
    "{{ profile | map: '__class__' | join }}",
])
def test_templates_cannot_reach_python_internals(source):
    context = personalization.message_context(record={"first_name": "Ada"})
    assert "class" not in personalization.render(source, context)


def test_resource_limits_stop_runaway_templates():
    with pytest.raises(personalization.RenderError, match="loop iteration limit"):
        personalization.render("{% for i in (1..100000) %}{% for j in (1..100000) %}x{% endfor %}{% endfor %}", {})
    with pytest.raises(personalization.RenderError, match="limit"):
        personalization.render("{% assign s = 'xxxxxxxxxx' %}{% for i in (1..9000) %}{{ s }}{{ s }}{{ s }}{{ s }}"
                               "{{ s }}{{ s }}{{ s }}{% endfor %}", {})


def test_text_part_is_generated_from_html_and_preheader_is_hidden():
    rendered = content.render_content("email", {
        "subject": "Hi  {{ profile.first_name }}\n", "preheader": "Spring sale",
        "html": "<html><head><style>p{}</style></head><body><h1>Hello {{ profile.first_name }}</h1>"
                "<p>See <a href='https://x.test/sale'>the sale</a></p><ul><li>one</li><li>two</li></ul></body></html>"},
        personalization.message_context(record={"first_name": "Ada & Co"}))
    assert rendered["subject"] == "Hi Ada & Co"
    assert rendered["text"] == "Hello Ada & Co\n\nSee the sale (https://x.test/sale)\n\n- one\n\n- two"
    assert "Ada &amp; Co" in rendered["html"] and 'display:none' in rendered["html"]
    assert rendered["html"].index("Spring sale") < rendered["html"].index("Hello")


@pytest.mark.parametrize(("text", "segments"), [
    ("", 0), ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("€" * 80, 1), ("€" * 81, 2),
    ("é" * 160, 1), ("ł" * 70, 1), ("ł" * 71, 2), ("😀" * 35, 1), ("😀" * 36, 2),
])
def test_sms_segments(text, segments):
    assert content.sms_segments(text) == segments


def test_content_shape_is_checked_per_channel():
    assert [p.path for p in content.content_problems("email", {"subject": "x"})] == [""]
    assert [p.message for p in content.content_problems("email", {"subject": "x"})] == ["Give an html or a text part."]
    assert content.content_problems("sms", {"text": "hi", "html": "x"})[0].message.startswith("Additional properties")
    assert content.content_problems("push", {"title": "t", "body": "b", "data": {"k": "{{ vars.v }}"}},
                                    variables=set())[0].path == "data.k"


# API ---------------------------------------------------------------------------------------------

@pytest.fixture
def ada(acme, people):
    record, _ = profile_upsert(tenant=acme, values={"id": "ada", "email": "ada@example.test", "first_name": "Ada",
                                                    "phone": "+33612345678"}, by=None)
    return record


def test_validate_endpoint_lists_problems_with_lines(api, acme):
    response = api("acme", "viewer").post("/api/v1/channels/content/validate", {
        "channel": "email", "variables": ["promo"],
        "content": {"subject": "Hi {{ profile.first_name }}", "html": "<p>\n{{ profile.shoe }}\n{{ vars.x }}</p>"}},
        format="json")
    assert response.status_code == 200
    assert response.json() == {"is_valid": False, "problems": [
        {"path": "html", "line": 2, "message": "Unknown field profile.shoe."},
        {"path": "html", "line": 3, "message": "Unknown variable vars.x."}]}
    ok = api("acme", "viewer").post("/api/v1/channels/content/validate", {
        "channel": "sms", "content": {"text": "Hi {{ profile.first_name }}"}}, format="json")
    assert ok.json() == {"is_valid": True, "problems": []}


def test_validate_refuses_an_unknown_schema_or_channel(api, acme):
    client = api("acme", "marketer")
    response = client.post("/api/v1/channels/content/validate", {"channel": "email", "schema": "nope",
                                                                  "content": {"subject": "x", "text": "y"}},
                           format="json")
    assert response.status_code == 400 and "schema" in response.json()["error"]["fields"]
    response = client.post("/api/v1/channels/content/validate", {"channel": "fax", "content": {}}, format="json")
    assert response.status_code == 400 and "channel" in response.json()["error"]["fields"]


def test_preview_renders_for_a_chosen_profile(api, acme, ada):
    response = api("acme", "marketer").post("/api/v1/channels/content/preview", {
        "channel": "email", "key": "ada", "variables": {"promo": "SPRING"}, "row": {"segment": "vip"},
        "content": {"subject": "{{ profile.first_name }}, {{ vars.promo }}", "html": "<b>{{ row.segment }}</b>"}},
        format="json")
    assert response.status_code == 200, response.content
    assert response.json()["subject"] == "Ada, SPRING" and response.json()["text"] == "vip"


def test_preview_of_invalid_content_or_unknown_profile_is_400(api, acme, ada):
    client = api("acme", "marketer")
    response = client.post("/api/v1/channels/content/preview", {
        "channel": "sms", "key": "ada", "content": {"text": "Hi\n{{ profile.first_name | }}"}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"content.text": [
        "line 2: Syntax error: expected word, found end of expression."]}
    response = client.post("/api/v1/channels/content/preview", {
        "channel": "sms", "key": "nobody", "content": {"text": "Hi"}}, format="json")
    assert response.status_code == 400 and "key" in response.json()["error"]["fields"]


def test_email_proof_reaches_the_test_addresses(api, acme, ada):
    admin = api("acme", "admin")
    with SmtpSink() as sink:
        admin.patch("/api/v1/channels/settings", {"smtp_host": "127.0.0.1", "smtp_port": sink.port,
                                                  "smtp_security": "none", "from_email": "news@acme.test"},
                    format="json")
        response = api("acme", "marketer").post("/api/v1/channels/content/proof", {
            "channel": "email", "key": "ada", "to": ["qa1@acme.test", "qa2@acme.test"],
            "content": {"subject": "Hello {{ profile.first_name }}", "html": "<p>Hi {{ profile.first_name }}</p>"}},
            format="json")
        assert response.status_code == 200, response.content
        assert sorted(r for m in sink.messages for r in m.rcpt_tos) == ["qa1@acme.test", "qa2@acme.test"]
        assert {m.message["Subject"] for m in sink.messages} == {"[Proof] Hello Ada"}
        assert "Hi Ada" in sink.messages[0].message.get_body(("plain",)).get_content()


def test_sms_proof_goes_to_the_webhook(api, acme, ada, http_sink):
    api("acme", "admin").patch("/api/v1/channels/settings", {"sms_webhook_url": http_sink.url}, format="json")
    response = api("acme", "marketer").post("/api/v1/channels/content/proof", {
        "channel": "sms", "key": "ada", "to": ["+33600000000"], "content": {"text": "Hi {{ profile.first_name }}"}},
        format="json")
    assert response.status_code == 200, response.content
    assert http_sink.requests[0].json["text"] == "Hi Ada" and http_sink.requests[0].json["test"] is True


def test_proofs_need_build_rights_and_valid_addresses(api, acme, ada):
    body = {"channel": "email", "key": "ada", "to": ["not-an-email"], "content": {"subject": "x", "text": "y"}}
    assert api("acme", "viewer").post("/api/v1/channels/content/proof", body, format="json").status_code == 403
    response = api("acme", "marketer").post("/api/v1/channels/content/proof", body, format="json")
    assert response.status_code == 400
