"""Profiles through their friendly routes, and consent."""

from __future__ import annotations

import pytest

from apps.profiles.models import ProfileConsentEvent
from apps.profiles.services import profile_consent_set
from apps.tenants.scoping import tenant_scope

pytestmark = pytest.mark.django_db

PROFILES = "/api/v1/profiles/"


@pytest.fixture
def marketer(api):
    return api("acme", "marketer")


def events(tenant, key):
    with tenant_scope(tenant):
        return list(ProfileConsentEvent.objects.filter(profile_key=key).order_by("at", "id").values_list(
            "channel", "opted_in", "source"))


def test_post_creates_then_merges(marketer):
    response = marketer.post(PROFILES, {"id": "ann", "email": "Ann@Example.com", "first_name": "Ann"})
    assert response.status_code == 201
    assert response.json()["values"]["email"] == "ann@example.com"
    assert response.json()["values"]["email_opt_in"] is True  # the schema's default

    response = marketer.post(PROFILES, {"id": "ann", "country": "FR"})
    assert response.status_code == 200
    assert response.json()["values"]["first_name"] == "Ann" and response.json()["values"]["country"] == "FR"

    assert marketer.get(f"{PROFILES}ann/").json() == marketer.get("/api/v1/schemas/profile/records/ann/").json()
    assert [r["key"] for r in marketer.get(PROFILES).json()["results"]] == ["ann"]


def test_validation_errors_name_the_field(marketer):
    response = marketer.post(PROFILES, {"id": "bob", "email": "not-an-email", "birth_date": "31/12/1990",
                                        "sms_opt_in": "maybe", "shoe_size": 44})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "email": ["not an e-mail address"], "birth_date": ["not a date (YYYY-MM-DD)"],
        "sms_opt_in": ["not a yes/no value (true/false)"], "shoe_size": ["Unknown field."]}
    assert marketer.post(PROFILES, {"email": "a@b.co"}).json()["error"]["fields"] == {
        "id": ["This field is required."]}


def test_patch_put_delete(marketer):
    marketer.post(PROFILES, {"id": "cy", "first_name": "Cy", "language": "fr"})
    assert marketer.patch(f"{PROFILES}cy/", {"language": "de"}).json()["values"]["first_name"] == "Cy"
    replaced = marketer.put(f"{PROFILES}cy/", {"last_name": "Young"}).json()["values"]
    assert "first_name" not in replaced and replaced["last_name"] == "Young" and replaced["id"] == "cy"
    assert marketer.delete(f"{PROFILES}cy/").status_code == 204
    assert marketer.get(f"{PROFILES}cy/").status_code == 404


def test_consent_changes_are_recorded(marketer, acme):
    marketer.post(PROFILES, {"id": "dee", "email": "dee@example.com"})
    assert events(acme, "dee") == []  # a default is not a consent

    response = marketer.post(f"{PROFILES}dee/consents", {"channel": "email", "opted_in": False,
                                                         "source": "unsubscribe link"})
    assert response.status_code == 201
    assert marketer.get(f"{PROFILES}dee/").json()["values"]["email_opt_in"] is False

    marketer.patch(f"{PROFILES}dee/", {"sms_opt_in": True, "first_name": "Dee"})
    marketer.patch(f"{PROFILES}dee/", {"sms_opt_in": True})  # no change, nothing recorded
    assert events(acme, "dee") == [("email", False, "unsubscribe link"), ("sms", True, "api")]

    history = marketer.get(f"{PROFILES}dee/consents").json()["results"]
    assert [(e["channel"], e["opted_in"]) for e in history] == [("sms", True), ("email", False)]
    assert history[0]["by"] == "marketer@acme.test"

    bad = marketer.post(f"{PROFILES}dee/consents", {"channel": "fax", "opted_in": True})
    assert bad.status_code == 400


def test_consent_service_for_other_apps(acme, people):
    from apps.profiles.services import profile_upsert

    profile, _ = profile_upsert(tenant=acme, values={"id": "eve", "sms_opt_in": True}, by=None, source="import")
    assert events(acme, "eve") == [("sms", True, "import")]
    profile_consent_set(tenant=acme, profile=profile, channel="sms", opted_in=False, source="STOP reply", by=None)
    assert events(acme, "eve")[-1] == ("sms", False, "STOP reply")


def test_roles_and_tenants(api):
    api("acme", "marketer").post(PROFILES, {"id": "fay"})
    viewer = api("acme", "viewer")
    assert viewer.get(f"{PROFILES}fay/").status_code == 200
    assert viewer.get(f"{PROFILES}fay/consents").status_code == 200
    assert viewer.post(PROFILES, {"id": "gus"}).status_code == 403
    assert viewer.post(f"{PROFILES}fay/consents", {"channel": "sms", "opted_in": True}).status_code == 403
    assert api("globex", "admin").get(f"{PROFILES}fay/").status_code == 404
    assert api("globex", "admin").get(f"{PROFILES}fay/consents").status_code == 404
