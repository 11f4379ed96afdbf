"""`flagstaff.FlagstaffProvider` through the real OpenFeature SDK (`openfeature-sdk` 0.10):
details with variant, reason, error codes and flag metadata; provider events on a change, when
the server goes away (stale) and when it comes back (ready)."""

import datetime
import queue

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.provider import ProviderStatus

import flagstaff
from conftest import PATIENCE


@pytest.fixture
def openfeature():
    yield api
    api.shutdown()
    api.clear_hooks()


def test_the_provider_resolves_through_the_openfeature_sdk(make_setup, openfeature):
    setup = make_setup()
    provider = flagstaff.FlagstaffProvider(setup.url, setup.key, reconnect_backoff=(0.05, 0.4), send_events=False)
    openfeature.set_provider_and_wait(provider, domain="py-sdk-tests")
    of = openfeature.get_client(domain="py-sdk-tests")
    assert of.get_provider_status() == ProviderStatus.READY
    acme = EvaluationContext("u-9", {"email": "ada@acme.com", "plan": "pro", "signed_up": datetime.datetime(2026, 3, 1, 12)})
    other = EvaluationContext("u-2")

    d = of.get_boolean_details("new-checkout", False, acme)
    assert (d.value, d.variant, d.reason, d.error_code) == (True, "on", "TARGETING_MATCH", None)
    assert d.flag_metadata["ruleId"] == "beta" and d.flag_metadata["version"] >= 1
    assert of.get_string_value("banner", "x", other) == "Welcome back ✓"
    assert of.get_float_value("max-items", 0.0, acme) == 2.5
    d = of.get_integer_details("max-items", 0, other)
    assert (d.value, type(d.value), d.reason) == (10, int, "DEFAULT")
    d = of.get_integer_details("max-items", 7, acme)
    assert (d.value, d.error_code) == (7, ErrorCode.TYPE_MISMATCH), "2.5 is not an integer"
    assert of.get_object_value("theme", {}, other) == {"bg": "#000", "size": 3}
    d = of.get_string_details("new-checkout", "dflt", acme)
    assert (d.value, d.error_code, d.reason) == ("dflt", ErrorCode.TYPE_MISMATCH, "ERROR")
    d = of.get_boolean_details("no-such-flag", True, acme)
    assert (d.value, d.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    d = of.get_boolean_details("half", True, EvaluationContext(None, {"plan": "free"}))
    assert (d.value, d.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)
    d = of.get_boolean_details("gated", True, other)
    assert (d.value, d.variant, d.reason, d.flag_metadata["prerequisite"]) == (False, "off", "PREREQUISITE_FAILED", "new-checkout")
    d = of.get_boolean_details("half", False, other)
    assert d.reason == "SPLIT" and d.variant in ("on", "off")


def test_provider_events_on_change_stale_and_recovery(make_setup, openfeature):
    setup = make_setup()
    provider = flagstaff.FlagstaffProvider(
        setup.url, setup.key, reconnect_backoff=(0.05, 0.4), send_events=False, poll_interval=3600
    )
    events = queue.Queue()
    for kind in (ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, ProviderEvent.PROVIDER_STALE, ProviderEvent.PROVIDER_READY):
        openfeature.add_handler(kind, lambda details, kind=kind: events.put((kind, details)))
    openfeature.set_provider_and_wait(provider, domain="py-sdk-events")
    of = openfeature.get_client(domain="py-sdk-events")

    def next_event(kind):
        while True:
            got, details = events.get(timeout=PATIENCE)
            if got == kind:
                return details

    next_event(ProviderEvent.PROVIDER_READY)
    client = provider.client
    from conftest import eventually

    eventually("the stream connects", lambda: client.status().stream_connected)
    setup.toggle("new-checkout", False)
    details = next_event(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert details.flags_changed == ["new-checkout"]
    assert of.get_boolean_value("new-checkout", True, EvaluationContext("u-9", {"email": "ada@acme.com"})) is False

    setup.server.kill()
    next_event(ProviderEvent.PROVIDER_STALE)
    assert of.get_provider_status() == ProviderStatus.STALE
    assert of.get_boolean_details("new-checkout", True, EvaluationContext("u-9")).variant == "off", "still evaluates"
    setup.server.restart()
    next_event(ProviderEvent.PROVIDER_READY)
    assert of.get_provider_status() == ProviderStatus.READY
