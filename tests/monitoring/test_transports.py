"""Tests for monitoring.transports: sending one alert notification over one channel.

The outside world (Slack, PagerDuty, remote webhooks) is played by ``FakeReceiver``: a stdlib
``ThreadingHTTPServer`` on 127.0.0.1, in a thread, that records every request (method, path,
headers, body) and answers from a per-test script (status, headers, body, optional delay).
Where a test needs a host *name*, a fake resolver maps it to 127.0.0.1. These tests never reach
the internet: every request made goes to 127.0.0.1, and the tests of refused targets show that
no request is made at all.

The SSRF guard refuses loopback targets, so tests that deliver to the fake receiver turn on
``LGMON_ALERTS_ALLOW_PRIVATE_TARGETS`` (the ``allow_private`` fixture); the guard's own tests
leave it off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.mail import EmailMessage

from monitoring.transports import Message, Outcome, send
from tests.fakes import FakeReceiver, Reply

STARTS = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ENDS = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
FINGERPRINT = "ab" * 32
SLACK_TOKEN = "xoxbTOKENdoNotLeak1234567890"
WEBHOOK_SECRET = "s3cret-signing-key"
ROUTING_KEY = "R0UT1NGKEYdoNotLeak0123456789abc"
TIMEOUT = 0.5


def make_message(**changes: Any) -> Message:
    message = Message(
        kind="firing",
        fingerprint=FINGERPRINT,
        rule="error-rate",
        severity="high",
        labels={"graph": "support-bot", "env": "prod"},
        summary="error_rate 0.42 > 0.1 for graph=support-bot",
        value=0.42,
        starts_at=STARTS,
        ends_at=None,
        url="https://lgmon.example/admin/monitoring/alert/1/",
    )
    return dataclasses.replace(message, **changes)


# --- the fake outside world ------------------------------------------------------------------


@pytest.fixture
def guarded(settings: Any) -> None:
    settings.LGMON_ALERTS_ALLOW_PRIVATE_TARGETS = False


class FakeDNS:
    """Answers for the names it was given (a name given no addresses does not exist); other
    names (IP literals, localhost) go to the real resolver."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        self._real = socket.getaddrinfo

    def add(self, name: str, *addresses: str) -> None:
        self.names[name] = list(addresses)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in self.names:
            return self._real(host, port, *args, **kwargs)
        self.lookups.append(host)
        if not self.names[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in self.names[host]
        ]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    dns = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    return dns


@pytest.fixture
def no_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any HTTP request is even attempted."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an HTTP request was attempted")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)


# --- what each channel sends ---------------------------------------------------------------


def test_slack_posts_a_headline_and_an_attachment_colored_by_severity_green_when_resolved(
    receiver: FakeReceiver, allow_private: None
) -> None:
    url = receiver.url(f"/services/T000/B000/{SLACK_TOKEN}")
    message = make_message(severity="critical", labels={"graph": "<support & bot>"})

    firing = send("slack", {"url": url}, message, timeout=TIMEOUT)
    resolved = send(
        "slack", {"url": url}, make_message(kind="resolved", ends_at=ENDS), timeout=TIMEOUT
    )

    assert firing == Outcome("sent", "HTTP 200")
    assert resolved.status == "sent"
    first, second = receiver.requests
    assert first.method == "POST"
    assert first.path == f"/services/T000/B000/{SLACK_TOKEN}"
    assert first.headers["content-type"] == "application/json"
    body = first.json()
    assert body["text"] == (
        "[FIRING critical] error-rate: error_rate 0.42 &gt; 0.1 for graph=support-bot"
    )
    [attachment] = body["attachments"]
    assert attachment["color"] == "#a30200"
    assert attachment["title"] == "error-rate"
    assert attachment["title_link"] == "https://lgmon.example/admin/monitoring/alert/1/"
    assert attachment["ts"] == int(STARTS.timestamp())
    assert {"title": "graph", "value": "&lt;support &amp; bot&gt;", "short": True} in (
        attachment["fields"]
    )
    assert {"title": "value", "value": "0.42", "short": True} in attachment["fields"]

    resolved_body = second.json()
    assert resolved_body["text"].startswith("[RESOLVED high] error-rate:")
    assert resolved_body["attachments"][0]["color"] == "#2eb886"
    assert resolved_body["attachments"][0]["ts"] == int(ENDS.timestamp())


def test_webhook_posts_the_documented_json_signed_with_hmac_sha256(
    receiver: FakeReceiver, allow_private: None
) -> None:
    config = {"url": receiver.url("/hooks/lgmon"), "secret": WEBHOOK_SECRET}
    message = make_message(kind="resolved", ends_at=ENDS)

    outcome = send("webhook", config, message, timeout=TIMEOUT)

    assert outcome.status == "sent"
    [request] = receiver.requests
    assert request.path == "/hooks/lgmon"
    assert request.headers["user-agent"] == "lgmon-alerts/1"
    assert request.headers["content-type"] == "application/json"
    expected = hmac.new(WEBHOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-lgmon-signature"] == f"sha256={expected}"
    assert request.json() == {
        "version": "1",
        "status": "resolved",
        "kind": "resolved",
        "fingerprint": FINGERPRINT,
        "rule": "error-rate",
        "severity": "high",
        "labels": {"graph": "support-bot", "env": "prod"},
        "summary": "error_rate 0.42 > 0.1 for graph=support-bot",
        "value": 0.42,
        "starts_at": "2026-11-24T12:00:00+00:00",
        "ends_at": "2026-11-24T12:30:00+00:00",
        "url": "https://lgmon.example/admin/monitoring/alert/1/",
    }


def test_webhook_without_a_secret_is_unsigned_and_firing_kinds_report_status_firing(
    receiver: FakeReceiver, allow_private: None
) -> None:
    outcome = send(
        "webhook",
        {"url": receiver.url("/hook")},
        make_message(kind="flapping", value=float("nan")),
        timeout=TIMEOUT,
    )

    assert outcome.status == "sent"
    [request] = receiver.requests
    assert "x-lgmon-signature" not in request.headers
    body = request.json()
    assert (body["status"], body["kind"]) == ("firing", "flapping")
    assert body["value"] is None  # JSON has no NaN
    assert body["ends_at"] is None


def test_pagerduty_triggers_and_resolves_with_the_fingerprint_as_dedup_key(
    receiver: FakeReceiver, allow_private: None
) -> None:
    receiver.reply(Reply(202, b'{"status":"success"}'), Reply(202, b'{"status":"success"}'))
    config = {"routing_key": ROUTING_KEY, "url": receiver.url("/v2/enqueue")}

    triggered = send("pagerduty", config, make_message(severity="medium"), timeout=TIMEOUT)
    resolved = send(
        "pagerduty", config, make_message(kind="resolved", ends_at=ENDS), timeout=TIMEOUT
    )

    assert triggered == Outcome("sent", "HTTP 202")
    assert resolved == Outcome("sent", "HTTP 202")
    trigger, resolve = (request.json() for request in receiver.requests)
    assert trigger == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": FINGERPRINT,
        "payload": {
            "summary": "[FIRING medium] error-rate: error_rate 0.42 > 0.1 for graph=support-bot",
            "source": "lgmon",
            "severity": "warning",
            "timestamp": "2026-11-24T12:00:00+00:00",
            "custom_details": {"graph": "support-bot", "env": "prod", "value": 0.42},
        },
        "links": [
            {"href": "https://lgmon.example/admin/monitoring/alert/1/", "text": "Alert in lgmon"}
        ],
    }
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": FINGERPRINT,
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("low", "info"), ("medium", "warning"), ("high", "error"), ("critical", "critical")],
)
def test_pagerduty_severity_mapping(
    receiver: FakeReceiver, allow_private: None, severity: Any, expected: str
) -> None:
    receiver.reply(Reply(202))
    config = {"routing_key": ROUTING_KEY, "url": receiver.url("/v2/enqueue")}

    assert send("pagerduty", config, make_message(severity=severity)).status == "sent"

    assert receiver.requests[0].json()["payload"]["severity"] == expected


def test_email_goes_through_django_mail_with_a_headline_subject(
    mailoutbox: list[EmailMessage], settings: Any
) -> None:
    settings.DEFAULT_FROM_EMAIL = "lgmon@example.com"
    config = {"to": ["oncall@example.com", "lead@example.com"]}

    outcome = send("email", config, make_message(), timeout=TIMEOUT)

    assert outcome.status == "sent"
    [email] = mailoutbox
    assert email.subject == "[FIRING high] error-rate: error_rate 0.42 > 0.1 for graph=support-bot"
    assert email.to == ["oncall@example.com", "lead@example.com"]
    assert email.from_email == "lgmon@example.com"
    assert "error_rate 0.42 > 0.1 for graph=support-bot" in str(email.body)
    assert "graph = support-bot" in str(email.body)
    assert "https://lgmon.example/admin/monitoring/alert/1/" in str(email.body)


def test_email_subject_stays_on_one_line(mailoutbox: list[EmailMessage]) -> None:
    message = make_message(summary="line one\r\nBcc: victim@example.com")

    assert send("email", {"to": ["oncall@example.com"]}, message).status == "sent"

    assert mailoutbox[0].subject == ("[FIRING high] error-rate: line one Bcc: victim@example.com")
    assert mailoutbox[0].bcc == []


@pytest.mark.parametrize(
    "config",
    [{}, {"to": []}, {"to": "oncall@example.com"}, {"to": ["not-an-address"]}, {"to": [None]}],
)
def test_email_without_valid_recipients_is_permanent(
    mailoutbox: list[EmailMessage], config: dict[str, Any]
) -> None:
    outcome = send("email", config, make_message())

    assert outcome.status == "permanent"
    assert mailoutbox == []


def test_email_smtp_failure_is_retry(settings: Any, unused_tcp_port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = unused_tcp_port

    outcome = send("email", {"to": ["oncall@example.com"]}, make_message(), timeout=TIMEOUT)

    assert outcome.status == "retry"
    assert "ConnectionRefusedError" in outcome.detail


def test_unknown_kind_and_missing_config_are_permanent(no_requests: None) -> None:
    message = make_message()

    assert send("sms", {"url": "https://example.com/"}, message) == Outcome(
        "permanent", "unknown channel kind"
    )
    assert send("slack", {}, message).status == "permanent"
    assert send("webhook", {"url": ""}, message).status == "permanent"
    assert send("webhook", {"url": "https://example.com/", "secret": 42}, message).status == (
        "permanent"
    )
    assert send("pagerduty", {}, message).status == "permanent"


# --- how answers map to outcomes ---------------------------------------------------------------


@pytest.mark.parametrize("retry_after_header", ["120", "delta"], ids=["delay-seconds", "http-date"])
def test_429_is_retry_with_retry_after(
    receiver: FakeReceiver, allow_private: None, retry_after_header: str
) -> None:
    header = retry_after_header
    if header == "delta":
        header = formatdate(time.time() + 120, usegmt=True)
    receiver.reply(Reply(429, b"slow down", {"Retry-After": header}))

    outcome = send("slack", {"url": receiver.url()}, make_message(), timeout=TIMEOUT)

    assert outcome.status == "retry"
    assert outcome.detail == "HTTP 429: slow down"
    assert outcome.retry_after is not None
    assert 115 <= outcome.retry_after <= 120


def test_429_without_retry_after_is_retry_without_a_delay(
    receiver: FakeReceiver, allow_private: None
) -> None:
    receiver.reply(Reply(429, b"", {"Retry-After": "soon"}))

    outcome = send("webhook", {"url": receiver.url()}, make_message(), timeout=TIMEOUT)

    assert outcome == Outcome("retry", "HTTP 429", None)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (503, {"Retry-After": "30"}, 30.0),
        (503, {}, None),
        (500, {"Retry-After": "30"}, None),
        (502, {}, None),
        (408, {}, None),
    ],
)
def test_408_and_5xx_are_retry(
    receiver: FakeReceiver,
    allow_private: None,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    receiver.reply(Reply(status, b"unavailable", headers))

    outcome = send("webhook", {"url": receiver.url()}, make_message(), timeout=TIMEOUT)

    assert outcome == Outcome("retry", f"HTTP {status}: unavailable", retry_after)


def test_404_is_permanent_with_status_and_short_body_in_detail(
    receiver: FakeReceiver, allow_private: None
) -> None:
    receiver.reply(Reply(404, b"no_service\n"))

    outcome = send("slack", {"url": receiver.url("/services/x")}, make_message())

    assert outcome == Outcome("permanent", "HTTP 404: no_service")


def test_error_body_read_is_capped_and_detail_is_short(
    receiver: FakeReceiver, allow_private: None
) -> None:
    receiver.reply(Reply(400, b"x" * (4 * 1024 * 1024)))

    outcome = send("webhook", {"url": receiver.url()}, make_message(), timeout=TIMEOUT)

    assert outcome.status == "permanent"
    assert outcome.detail.startswith("HTTP 400: xxxx")
    assert len(outcome.detail) <= len("HTTP 400: ") + 200


def test_redirect_is_not_followed_and_is_permanent(
    receiver: FakeReceiver, allow_private: None
) -> None:
    receiver.reply(Reply(302, b"", {"Location": receiver.url("/elsewhere")}))

    outcome = send("webhook", {"url": receiver.url("/hook")}, make_message(), timeout=TIMEOUT)

    assert outcome.status == "permanent"
    assert "redirect not followed" in outcome.detail
    assert [request.path for request in receiver.requests] == ["/hook"]


def test_a_receiver_slower_than_the_timeout_is_retry(
    receiver: FakeReceiver, allow_private: None
) -> None:
    receiver.reply(Reply(200, delay=5.0))

    started = time.monotonic()
    outcome = send("slack", {"url": receiver.url()}, make_message(), timeout=0.3)

    assert time.monotonic() - started < 2.0
    assert outcome == Outcome("retry", "network error: ReadTimeout")
    assert len(receiver.requests) == 1


def test_connection_refused_is_retry(allow_private: None, unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/hook"

    outcome = send("webhook", {"url": url}, make_message(), timeout=TIMEOUT)

    assert outcome == Outcome("retry", "network error: ConnectionError")


def test_details_never_contain_the_url_or_the_secrets(
    receiver: FakeReceiver, allow_private: None, unused_tcp_port: int
) -> None:
    slack_url = receiver.url(f"/services/T000/B000/{SLACK_TOKEN}")
    webhook_url = receiver.url(f"/hook?token={WEBHOOK_SECRET}")
    pd_url = receiver.url("/v2/enqueue")
    # Receivers that echo what they got back in their error bodies.
    receiver.reply(
        Reply(404, f"no hook at {slack_url} (/services/T000/B000/{SLACK_TOKEN})".encode()),
        Reply(403, f"bad signature for {webhook_url}, key {WEBHOOK_SECRET}".encode()),
        Reply(400, json.dumps({"routing_key": ROUTING_KEY, "error": "invalid"}).encode()),
        Reply(200, delay=5.0),
    )
    message = make_message()

    outcomes = [
        send("slack", {"url": slack_url}, message, timeout=TIMEOUT),
        send("webhook", {"url": webhook_url, "secret": WEBHOOK_SECRET}, message, timeout=TIMEOUT),
        send("pagerduty", {"routing_key": ROUTING_KEY, "url": pd_url}, message, timeout=TIMEOUT),
        send("slack", {"url": slack_url}, message, timeout=0.3),
        send("slack", {"url": f"http://127.0.0.1:{unused_tcp_port}/{SLACK_TOKEN}"}, message),
    ]

    assert [outcome.status for outcome in outcomes] == [
        "permanent",
        "permanent",
        "permanent",
        "retry",
        "retry",
    ]
    assert outcomes[0].detail.startswith("HTTP 404: no hook at [redacted]")
    assert outcomes[2].detail.startswith("HTTP 400: ")
    for outcome in outcomes:
        for secret in (SLACK_TOKEN, WEBHOOK_SECRET, ROUTING_KEY, "127.0.0.1", "/services/"):
            assert secret not in outcome.detail


# --- the SSRF guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1:8080/hook",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "https://224.0.0.1/",
    ],
)
def test_private_and_special_addresses_are_refused_without_a_request(
    guarded: None, no_requests: None, url: str
) -> None:
    outcome = send("webhook", {"url": url}, make_message())

    assert outcome == Outcome(
        "permanent", "target address not allowed: private/loopback/link-local"
    )


def test_loopback_is_refused_without_reaching_the_receiver_unless_allowed(
    receiver: FakeReceiver, settings: Any
) -> None:
    settings.LGMON_ALERTS_ALLOW_PRIVATE_TARGETS = False
    refused = send("slack", {"url": receiver.url("/hook")}, make_message())
    refused_by_name = send(
        "slack", {"url": receiver.url("/hook", host="localhost")}, make_message()
    )

    assert refused.status == refused_by_name.status == "permanent"
    assert refused.detail == "target address not allowed: private/loopback/link-local"
    assert receiver.requests == []

    settings.LGMON_ALERTS_ALLOW_PRIVATE_TARGETS = True
    assert send("slack", {"url": receiver.url("/hook")}, make_message()).status == "sent"
    assert len(receiver.requests) == 1


def test_the_setting_defaults_to_refusing(receiver: FakeReceiver, settings: Any) -> None:
    if hasattr(settings, "LGMON_ALERTS_ALLOW_PRIVATE_TARGETS"):
        del settings.LGMON_ALERTS_ALLOW_PRIVATE_TARGETS

    assert send("slack", {"url": receiver.url()}, make_message()).status == "permanent"
    assert receiver.requests == []


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "file:///etc/passwd", "gopher://example.com/", "example.com/hook"],
)
def test_only_http_and_https_urls_are_allowed(
    allow_private: None, no_requests: None, url: str
) -> None:
    outcome = send("webhook", {"url": url}, make_message())

    assert outcome == Outcome("permanent", "only http and https URLs are allowed")


@pytest.mark.parametrize(
    "addresses",
    [
        ("93.184.215.14", "127.0.0.1"),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::1"),
        ("::ffff:10.0.0.1",),
        ("2002:7f00:1::",),  # 6to4 wrapping 127.0.0.1
        ("fe80::1",),
        ("fd00::1",),
    ],
)
def test_a_name_is_refused_if_any_of_its_addresses_is_not_public(
    guarded: None, no_requests: None, fake_dns: FakeDNS, addresses: tuple[str, ...]
) -> None:
    fake_dns.add("hooks.example.test", *addresses)

    outcome = send("slack", {"url": "https://hooks.example.test/services/x"}, make_message())

    assert outcome.status == "permanent"
    assert outcome.detail.startswith("target address not allowed")


def test_the_connection_goes_to_the_address_that_was_checked(
    receiver: FakeReceiver, allow_private: None, fake_dns: FakeDNS
) -> None:
    fake_dns.add("hooks.example.test", "127.0.0.1")

    outcome = send("slack", {"url": receiver.url("/x", host="hooks.example.test")}, make_message())

    assert outcome.status == "sent"
    # Resolved once, by the guard; the request then went to that address, with the name kept
    # for the Host header.
    assert fake_dns.lookups == ["hooks.example.test"]
    assert receiver.requests[0].headers["host"] == f"hooks.example.test:{receiver.port}"


def test_when_an_address_refuses_the_next_one_is_tried(
    receiver: FakeReceiver, allow_private: None, fake_dns: FakeDNS
) -> None:
    # The receiver listens on 127.0.0.1 only, so 127.0.0.2 refuses the connection.
    fake_dns.add("hooks.example.test", "127.0.0.2", "127.0.0.1")

    outcome = send("slack", {"url": receiver.url("/x", host="hooks.example.test")}, make_message())

    assert outcome.status == "sent"
    assert len(receiver.requests) == 1


def test_a_name_that_does_not_resolve_is_retry(
    allow_private: None, no_requests: None, fake_dns: FakeDNS
) -> None:
    fake_dns.add("no-such-host.example.test")

    outcome = send("slack", {"url": "https://no-such-host.example.test/x"}, make_message())

    assert outcome.status == "retry"
    assert outcome.detail.startswith("DNS resolution failed")


# --- TLS with a pinned address ------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example.test (made with the openssl tool)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=hooks.example.test",
            "-addext", "subjectAltName=DNS:hooks.example.test",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_receiver(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeReceiver, list[str | None]]]:
    """An HTTPS fake receiver, trusted through REQUESTS_CA_BUNDLE, recording the SNI names."""
    cert, key = certificate
    server_names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _context: server_names.append(name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    server = FakeReceiver(tls=context)
    yield server, server_names
    server.close()


def test_https_to_a_pinned_address_still_verifies_the_certificate_for_the_host_name(
    tls_receiver: tuple[FakeReceiver, list[str | None]], allow_private: None, fake_dns: FakeDNS
) -> None:
    receiver, server_names = tls_receiver
    fake_dns.add("hooks.example.test", "127.0.0.1")
    fake_dns.add("other.example.test", "127.0.0.1")
    message = make_message()

    good = send("slack", {"url": receiver.url("/x", host="hooks.example.test")}, message)
    wrong_name = send("slack", {"url": receiver.url("/x", host="other.example.test")}, message)

    assert good == Outcome("sent", "HTTP 200")
    assert wrong_name == Outcome("retry", "network error: SSLError")
    assert server_names[0] == "hooks.example.test"
    assert len(receiver.requests) == 1
