"""Alert transports: send one notification over one channel and report how it went.

This is the bottom layer of lgmon's alerting. It knows nothing about the database: the caller
(the alert dispatcher) builds a :class:`Message`, picks a channel kind and its config, calls
:func:`send`, and acts on the :class:`Outcome`: ``"sent"`` is done, ``"retry"`` is worth
another attempt later (honouring ``retry_after`` when the receiver gave one), ``"permanent"``
will fail the same way every time (bad config, refused target, 4xx) and should not be retried.

Channel kinds and their config:

* ``slack``: ``{"url": ...}``: a Slack (or Slack-compatible, e.g. Mattermost) incoming webhook.
* ``webhook``: ``{"url": ..., "secret": optional}``: a generic JSON POST. With a secret, the
  body is signed: ``X-Lgmon-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>``.
* ``pagerduty``: ``{"routing_key": ..., "url": optional}``: PagerDuty Events API v2, with the
  alert fingerprint as ``dedup_key`` so a resolve closes the incident its trigger opened.
* ``email``: ``{"to": [addresses]}``: through Django's mail backend, from
  ``settings.DEFAULT_FROM_EMAIL``.

Outbound HTTP is treated as untrusted (channel URLs are entered by users):

* only ``http``/``https``; redirects are never followed; at most 64 KiB of a response is read,
  and only to explain an error;
* SSRF guard: the host is resolved once and refused if any of its addresses is private,
  loopback, link-local, multicast, reserved or unspecified (unless
  ``settings.LGMON_ALERTS_ALLOW_PRIVATE_TARGETS`` is true). The request is then made to the
  checked address itself (the URL's host is kept for the ``Host`` header, TLS SNI and
  certificate verification), so a DNS answer that changes between check and connect
  (DNS rebinding) cannot redirect it. Because of that pinning, proxy settings from the
  environment are not used: alert deliveries connect directly. ``REQUESTS_CA_BUNDLE`` /
  ``CURL_CA_BUNDLE`` are still honoured for certificate verification;
* secrets (webhook URLs, which carry Slack's token; signing secrets; routing keys) never appear
  in :attr:`Outcome.detail` or in log messages; text echoed by a receiver is scrubbed of them.

``timeout`` bounds the connect and each read (as in ``requests``); the error body is read only
until that much time has passed since the request started. DNS resolution uses the system
resolver and its own timeouts.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import smtplib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

logger = logging.getLogger(__name__)

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
USER_AGENT = "lgmon-alerts/1"
SIGNATURE_HEADER = "X-Lgmon-Signature"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_DETAIL_BODY_CHARS = 200

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Message:
    """One notification about one alert, independent of the channel it goes out on."""

    kind: Literal["firing", "resolved", "repeat", "flapping", "test"]
    fingerprint: str  # 64-hex alert fingerprint (used as PagerDuty dedup_key)
    rule: str  # rule name
    severity: Literal["low", "medium", "high", "critical"]
    labels: dict[str, str]
    summary: str  # one human line, e.g. "error_rate 0.42 > 0.1 for graph=support-bot"
    value: float | None
    starts_at: datetime  # aware UTC
    ends_at: datetime | None  # set for resolved
    url: str  # link to the alert in the admin ("" if unknown)


@dataclass(frozen=True)
class Outcome:
    """How one delivery attempt went."""

    status: Literal["sent", "retry", "permanent"]
    detail: str = ""  # short reason, never containing secrets (no URLs with tokens, no keys)
    retry_after: float | None = None  # seconds, from a Retry-After header (429/503) if present


def send(kind: str, config: dict[str, Any], message: Message, *, timeout: float = 10.0) -> Outcome:
    """Deliver ``message`` over one channel of ``kind`` configured by ``config``."""
    sender = _SENDERS.get(kind)
    outcome = (
        Outcome("permanent", "unknown channel kind")
        if sender is None
        else sender(config, message, timeout)
    )
    if outcome.status == "sent":
        logger.info("alert %r (%s) sent via %s", message.rule, message.kind, kind)
    else:
        logger.warning(
            "alert %r (%s) via %s not sent (%s): %s",
            message.rule,
            message.kind,
            kind,
            outcome.status,
            outcome.detail,
        )
    return outcome


# --- message rendering -------------------------------------------------------------------

_HEADLINES = {
    "firing": "FIRING",
    "resolved": "RESOLVED",
    "repeat": "REPEAT",
    "flapping": "FLAPPING",
    "test": "TEST",
}
_SLACK_COLORS = {"low": "#439fe0", "medium": "#daa038", "high": "#e8590c", "critical": "#a30200"}
_SLACK_RESOLVED_COLOR = "#2eb886"
_PAGERDUTY_SEVERITIES = {
    "low": "info",
    "medium": "warning",
    "high": "error",
    "critical": "critical",
}


def _headline(message: Message) -> str:
    """``[FIRING high] rule: summary``, on one line."""
    label = _HEADLINES.get(message.kind, message.kind.upper())
    return _one_line(f"[{label} {message.severity}] {message.rule}: {message.summary}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:  # the contract says aware UTC; never guess a local time
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _json_value(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those go out as null (the summary still tells)."""
    return value if value is not None and math.isfinite(value) else None


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_payload(message: Message) -> dict[str, Any]:
    """Plain text for notifications, plus one attachment: colored bar, title linking to the
    alert, the summary, and the labels (and value) as fields."""
    resolved = message.kind == "resolved"
    color = _SLACK_RESOLVED_COLOR if resolved else _SLACK_COLORS.get(message.severity, "#a30200")
    text = _slack_escape(_headline(message))
    fields = [
        {"title": _slack_escape(name), "value": _slack_escape(value), "short": True}
        for name, value in sorted(message.labels.items())
    ]
    if message.value is not None:
        fields.append({"title": "value", "value": f"{message.value:g}", "short": True})
    moment = message.ends_at if resolved and message.ends_at is not None else message.starts_at
    attachment: dict[str, Any] = {
        "fallback": text,
        "color": color,
        "title": _slack_escape(message.rule),
        "text": _slack_escape(message.summary),
        "fields": fields,
        "footer": "lgmon",
        "ts": int(moment.timestamp()),
    }
    if message.url:
        attachment["title_link"] = message.url
    return {"text": text, "attachments": [attachment]}


def _webhook_payload(message: Message) -> dict[str, Any]:
    """The generic webhook body. ``status`` is two-valued like Alertmanager's (``resolved``,
    or ``firing`` for every other kind) so receivers can switch on it; ``kind`` says why."""
    return {
        "version": "1",
        "status": "resolved" if message.kind == "resolved" else "firing",
        "kind": message.kind,
        "fingerprint": message.fingerprint,
        "rule": message.rule,
        "severity": message.severity,
        "labels": dict(message.labels),
        "summary": message.summary,
        "value": _json_value(message.value),
        "starts_at": _iso(message.starts_at),
        "ends_at": _iso(message.ends_at) if message.ends_at is not None else None,
        "url": message.url,
    }


def _pagerduty_payload(message: Message, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event: resolve for a resolved alert, trigger for every other kind."""
    if message.kind == "resolved":
        return {
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": message.fingerprint,
        }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": message.fingerprint,
        "payload": {
            "summary": _headline(message)[:1024],  # PagerDuty's limit
            "source": "lgmon",
            "severity": _PAGERDUTY_SEVERITIES.get(message.severity, "error"),
            "timestamp": _iso(message.starts_at),
            "custom_details": {**message.labels, "value": _json_value(message.value)},
        },
    }
    if message.url:
        event["links"] = [{"href": message.url, "text": "Alert in lgmon"}]
    return event


def _email_body(message: Message) -> str:
    lines = [
        message.summary,
        "",
        f"Rule:        {message.rule}",
        f"Severity:    {message.severity}",
        f"Status:      {message.kind}",
        f"Value:       {'-' if message.value is None else f'{message.value:g}'}",
        f"Started:     {_iso(message.starts_at)}",
    ]
    if message.ends_at is not None:
        lines.append(f"Resolved:    {_iso(message.ends_at)}")
    if message.labels:
        lines.append("Labels:")
        lines.extend(f"  {name} = {value}" for name, value in sorted(message.labels.items()))
    if message.url:
        lines.append(f"Alert:       {message.url}")
    lines.append(f"Fingerprint: {message.fingerprint}")
    return "\n".join(lines) + "\n"


# --- channels ------------------------------------------------------------------------------


def _send_slack(config: dict[str, Any], message: Message, timeout: float) -> Outcome:
    url = config.get("url")
    if not isinstance(url, str) or not url:
        return Outcome("permanent", "slack channel needs a 'url'")
    headers = {"Content-Type": "application/json"}
    return _post(url, _json_bytes(_slack_payload(message)), headers, timeout, secrets=())


def _send_webhook(config: dict[str, Any], message: Message, timeout: float) -> Outcome:
    url = config.get("url")
    if not isinstance(url, str) or not url:
        return Outcome("permanent", "webhook channel needs a 'url'")
    secret = config.get("secret")
    if secret is not None and not isinstance(secret, str):
        return Outcome("permanent", "webhook 'secret' must be a string")
    body = _json_bytes(_webhook_payload(message))
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[SIGNATURE_HEADER] = "sha256=" + _sign(secret, body)
    return _post(url, body, headers, timeout, secrets=(secret or "",))


def _sign(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body`` keyed with ``secret`` (what receivers recompute)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _send_pagerduty(config: dict[str, Any], message: Message, timeout: float) -> Outcome:
    routing_key = config.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key:
        return Outcome("permanent", "pagerduty channel needs a 'routing_key'")
    url = config.get("url") or PAGERDUTY_EVENTS_URL
    if not isinstance(url, str):
        return Outcome("permanent", "pagerduty 'url' must be a string")
    body = _json_bytes(_pagerduty_payload(message, routing_key))
    headers = {"Content-Type": "application/json"}
    return _post(url, body, headers, timeout, secrets=(routing_key,))


def _send_email(config: dict[str, Any], message: Message, timeout: float) -> Outcome:
    recipients = config.get("to")
    if not isinstance(recipients, list | tuple) or not recipients:
        return Outcome("permanent", "email channel needs a non-empty 'to' list")
    for address in recipients:
        if not isinstance(address, str):
            return Outcome("permanent", "invalid recipient address")
        try:
            validate_email(address)
        except ValidationError:
            return Outcome("permanent", "invalid recipient address")
    try:
        # The caller's timeout replaces EMAIL_TIMEOUT (whose default is to wait forever).
        connection = mail.get_connection(timeout=timeout)
        mail.send_mail(
            _headline(message)[:250],
            _email_body(message),
            settings.DEFAULT_FROM_EMAIL,
            list(recipients),
            connection=connection,
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome("retry", f"mail delivery failed: {type(exc).__name__}")
    return Outcome("sent", f"mailed {len(recipients)} recipient(s)")


_SENDERS: dict[str, Callable[[dict[str, Any], Message, float], Outcome]] = {
    "slack": _send_slack,
    "webhook": _send_webhook,
    "pagerduty": _send_pagerduty,
    "email": _send_email,
}


# --- HTTP delivery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """A URL whose host has been resolved (and, unless allowed otherwise, checked)."""

    scheme: str
    userinfo: str
    hostname: str  # ASCII (IDNA) host, no brackets
    port: int | None  # as written in the URL
    path_query: str
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return host if self.port is None else f"{host}:{self.port}"

    def url_for(self, address: IPAddress) -> str:
        """The URL with its host replaced by ``address`` (the connection is pinned to it)."""
        literal = str(address) if address.version == 4 else f"[{str(address).replace('%', '%25')}]"
        netloc = f"{self.userinfo}@{literal}" if self.userinfo else literal
        if self.port is not None:
            netloc += f":{self.port}"
        return f"{self.scheme}://{netloc}{self.path_query}"


class _PinnedHostAdapter(HTTPAdapter):
    """Connects to whatever IP the request URL names, while TLS (SNI and certificate
    hostname verification) uses the original hostname."""

    def __init__(self, server_hostname: str) -> None:
        self._server_hostname = server_hostname  # read by init_poolmanager, from __init__
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        # urllib3 applies server_hostname to https pools only.
        pool_kwargs["server_hostname"] = self._server_hostname
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def _is_public_address(address: IPAddress) -> bool:
    """False for private, loopback, link-local, multicast, reserved or unspecified
    addresses, other non-global ones (e.g. 100.64.0.0/10), and IPv6 forms embedding such an
    IPv4 address (IPv4-mapped, 6to4)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and not _is_public_address(embedded):
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _resolve_target(url: str) -> _Target | Outcome:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return Outcome("permanent", "invalid URL")
    if parts.scheme not in ("http", "https"):
        return Outcome("permanent", "only http and https URLs are allowed")
    host = parts.hostname
    if not host:
        return Outcome("permanent", "invalid URL: no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return Outcome("permanent", "invalid URL: bad host name")
    default_port = 443 if parts.scheme == "https" else 80
    try:
        infos = socket.getaddrinfo(host, port or default_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return Outcome("retry", f"DNS resolution failed: {type(exc).__name__}")
    addresses: list[IPAddress] = []
    for family, *_, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        return Outcome("retry", "DNS resolution returned no addresses")
    allow_private = getattr(settings, "LGMON_ALERTS_ALLOW_PRIVATE_TARGETS", False)
    if not allow_private and not all(_is_public_address(address) for address in addresses):
        return Outcome("permanent", "target address not allowed: private/loopback/link-local")
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    path_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme, userinfo, host, port, path_query, tuple(addresses))


def _post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, *, secrets: tuple[str, ...]
) -> Outcome:
    """POST ``body`` to ``url`` under the rules in the module docstring."""
    target = _resolve_target(url)
    if isinstance(target, Outcome):
        return target
    redact = _redactor(url, *secrets)
    deadline = time.monotonic() + timeout
    request_headers = {"User-Agent": USER_AGENT, **headers, "Host": target.host_header}
    verify: str | bool = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    error: requests.RequestException | None = None
    with requests.Session() as session:
        session.trust_env = False  # no env proxies (they would undo the pinning) or .netrc
        adapter = _PinnedHostAdapter(target.hostname)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # Like a normal connect, try the addresses in turn while connecting fails outright.
        for address in target.addresses:
            try:
                with session.post(
                    target.url_for(address),
                    data=body,
                    headers=request_headers,
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                    verify=verify,
                ) as response:
                    return _response_outcome(response, deadline, redact)
            except requests.RequestException as exc:
                error = exc
                if not _failed_to_connect(exc) or time.monotonic() >= deadline:
                    break
    assert error is not None  # there is at least one address, and each ended in an error
    return _error_outcome(error)


def _failed_to_connect(exc: requests.RequestException) -> bool:
    """Whether no connection was made at all (so another address may do better)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return False
    if isinstance(exc, requests.ConnectionError) and exc.args:
        return isinstance(getattr(exc.args[0], "reason", None), NewConnectionError)
    return False


def _error_outcome(exc: requests.RequestException) -> Outcome:
    name = type(exc).__name__
    invalid = (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidHeader,
        requests.exceptions.URLRequired,
    )
    if isinstance(exc, invalid):
        return Outcome("permanent", f"invalid request: {name}")
    return Outcome("retry", f"network error: {name}")  # never str(exc): it names the URL


def _response_outcome(
    response: requests.Response, deadline: float, redact: Callable[[str], str]
) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Outcome("sent", f"HTTP {status}")
    if 300 <= status < 400:
        return Outcome("permanent", f"redirect not followed (HTTP {status})")
    retry_after = (
        _parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    )
    text = redact(_read_error_text(response, deadline))
    if len(text) > MAX_DETAIL_BODY_CHARS:
        text = text[: MAX_DETAIL_BODY_CHARS - 1] + "…"
    detail = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status in (408, 429) or 500 <= status < 600:
        return Outcome("retry", detail, retry_after)
    return Outcome("permanent", detail)


def _read_error_text(response: requests.Response, deadline: float) -> str:
    """Up to MAX_RESPONSE_BYTES of the (decoded) body, as one line; whatever arrived if reading
    fails or the deadline passes."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=4096):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_RESPONSE_BYTES or time.monotonic() >= deadline:
                break
    except (requests.RequestException, OSError):
        pass
    raw = b"".join(chunks)[:MAX_RESPONSE_BYTES]
    return _one_line(raw.decode("utf-8", errors="replace"))


def _redactor(url: str, *secrets: str) -> Callable[[str], str]:
    """A function blanking out of receiver-supplied text anything that could be a secret:
    the URL, its path and query, long path/query pieces (Slack's token is one), its password,
    and the given secrets."""
    candidates = {secret for secret in secrets if secret}
    candidates.add(url)
    parts = urlsplit(url)  # the caller has parsed it already, so this does not raise
    if parts.password:
        candidates.add(parts.password)
    path_query = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(path_query) >= 8:
        candidates.add(path_query)
    candidates.update(piece for piece in re.split(r"[/?&=;]", path_query) if len(piece) >= 16)
    ordered = sorted(candidates, key=len, reverse=True)

    def redact(text: str) -> str:
        for candidate in ordered:
            text = text.replace(candidate, "[redacted]")
        return text

    return redact


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (a date in the
    past gives 0). None when absent or unparseable."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
