"""Pure parts of the webhook system: address policy, retry schedule, signing, payload shape."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from standardwebhooks import Webhook

from liveblog.webhooks.queue import Job
from liveblog.webhooks.schedule import next_step, parse_retry_after, retry_delay
from liveblog.webhooks.signing import message_id, new_secret, signed_headers
from liveblog.webhooks.ssrf import AddressPolicy

SCHEDULE = (5.0, 300.0, 1800.0)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "192.0.0.8", "198.18.0.1", "240.0.0.1", "255.255.255.255", "224.0.0.251", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "2001:db8::1", "64:ff9b::a00:1", "2002:7f00:1::",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "ff02::1",
])
def test_internal_addresses_refused(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_allowed(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_allow_list_covers_mapped_addresses() -> None:
    policy = AddressPolicy(["127.0.0.0/8"])
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("::1")) == "loopback"
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) == "private"


def test_retry_delays_follow_the_schedule_with_jitter() -> None:
    rng = random.Random(7)
    for attempts, base in enumerate(SCHEDULE, start=1):
        for _ in range(50):
            delay = retry_delay(attempts, SCHEDULE, rng=rng)
            assert delay is not None and base * 0.8 <= delay <= base * 1.2
    assert retry_delay(len(SCHEDULE) + 1, SCHEDULE) is None


def test_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert next_step(429, 1, SCHEDULE, retry_after=600.0) == ("retrying", 600.0)
    assert next_step(503, 1, SCHEDULE, retry_after=10 ** 9)[1] == 24 * 3600.0  # capped
    outcome, delay = next_step(500, 1, SCHEDULE, retry_after=600.0)  # only 429/503 ask for a pause
    assert outcome == "retrying" and delay is not None and delay <= 6.0


def test_outcomes() -> None:
    assert next_step(204, 1, SCHEDULE) == ("delivered", None)
    assert next_step(410, 1, SCHEDULE) == ("gone", None)
    assert next_step(301, 1, SCHEDULE)[0] == "retrying"  # redirects are not followed
    assert next_step(None, 1, SCHEDULE)[0] == "retrying"
    assert next_step(400, len(SCHEDULE) + 1, SCHEDULE) == ("failed", None)


def test_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    job = Job.for_change("wh_abc", "la-guerra", "1718000000000-3", "entry.created", '{"id":"7","blog":"la-guerra"}')
    assert job.id == message_id("la-guerra", "1718000000000-3", "wh_abc") == "msg_la-guerra_1718000000000-3_wh_abc"
    headers = signed_headers(secret, job.id, job.body)
    assert Webhook(secret).verify(job.body, headers) == {
        "type": "entry.created", "timestamp": "2024-06-10T06:13:20.000Z", "data": {"id": "7", "blog": "la-guerra"}}
    stale = signed_headers(secret, job.id, job.body, datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(Exception, match="too old"):
        Webhook(secret).verify(job.body, stale)
    assert orjson.loads(Job.from_json(job.to_json()).body) == orjson.loads(job.body)
