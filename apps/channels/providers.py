"""Providers hand rendered messages to the outside world: SMTP for e-mail, signed HTTP webhooks
for SMS and push. Each keeps one connection open for a whole batch, and every message carries
its idempotency key (SMTP `Message-ID`, webhook `Idempotency-Key` header) so that a batch
retried after a crash is recognisable by the receiver.

A result is `sent`, `failed` (permanent: the address or the payload was refused) or `retry`
(transient: connection lost, 4xx SMTP, 5xx / 429 HTTP)."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import http.client
import ipaddress
import json
import re
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from apps.channels import encryption
from apps.channels.models import ChannelSettings, SmtpSecurity

TIMEOUT_SECONDS = 15
SIGNATURE_HEADER = "X-Campaigns-Signature"
TIMESTAMP_HEADER = "X-Campaigns-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"

SENT, FAILED, RETRY = "sent", "failed", "retry"


class ProviderError(Exception):
    """The provider cannot be used at all (not configured, unreachable, refused login)."""


@dataclass
class Result:
    outcome: str                 # sent | failed | retry
    detail: str = ""
    is_hard_bounce: bool = False  # the address itself was refused for good

    @property
    def is_sent(self) -> bool:
        return self.outcome == SENT


@dataclass
class Email:
    to: str
    subject: str
    html: str
    text: str
    message_id: str              # without angle brackets: "<key>@<domain>"
    headers: dict[str, str] = field(default_factory=dict)


# Destinations ----------------------------------------------------------------------------------

def tls_context() -> ssl.SSLContext:
    """Verifying TLS context: the system's CAs, plus CHANNELS_TLS_CA_FILE (a private relay's CA)."""
    context = ssl.create_default_context()
    ca_file = getattr(settings, "CHANNELS_TLS_CA_FILE", None)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def check_destination(host: str) -> None:
    """Refuse hosts that resolve to private, loopback or link-local addresses (a tenant admin must
    not make the platform talk to its own network), unless CHANNELS_ALLOW_PRIVATE_NETWORKS."""
    if not host:
        raise ProviderError("No host is configured.")
    if getattr(settings, "CHANNELS_ALLOW_PRIVATE_NETWORKS", False):
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise ProviderError(f"Cannot resolve {host}: {exc.strerror}.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise ProviderError(f"{host} resolves to a non-public address; refused.")


# E-mail ----------------------------------------------------------------------------------------

# Control characters (C0 but tab, and DEL) have no place in a header: a personalised subject or
# name carrying one (NUL, ESC, a line break) gets a space instead.
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
# Lines of a text body: only CRLF, CR and LF end one (str.splitlines also splits on \f, \v, \x1c-\x1e
# and Unicode separators, which are content).
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def clean_header(value: str) -> str:
    """`value` without control characters (each run of them becomes one space)."""
    return CONTROLS.sub(" ", value)


def ascii_address(address: str) -> str | None:
    """`address` as it can be written in a plain (non-SMTPUTF8) message: as is when ASCII, with
    its domain IDNA-encoded (punycode) when only the domain is not; None when the local part is
    not ASCII (only SMTPUTF8 can carry it). RFC 2047 encoded-words are not allowed in addresses."""
    address = clean_header(address).strip()
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


def needs_smtputf8(config: ChannelSettings, email: Email) -> bool:
    """Whether an address of the message (envelope or header) can only be written in UTF-8."""
    return not (email.to.isascii() and config.from_email.isascii()
                and (not config.reply_to or ascii_address(config.reply_to) is not None))


def build_email(config: ChannelSettings, email: Email) -> EmailMessage:
    message = EmailMessage()
    from_name = clean_header(config.from_name)
    message["From"] = formataddr((from_name, config.from_email)) if from_name else config.from_email
    message["To"] = email.to
    message["Subject"] = clean_header(email.subject)
    if config.reply_to:
        message["Reply-To"] = ascii_address(config.reply_to) or clean_header(config.reply_to)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{email.message_id}>"
    for name, value in email.headers.items():
        message[name] = clean_header(value)
    message.set_content(email.text or " ", subtype="plain", charset="utf-8")
    if email.html:
        message.add_alternative(email.html, subtype="html", charset="utf-8")
    return message


def _header(value: str) -> str:
    """An unstructured header value (never an address: RFC 2047 §5) on one line, without control
    characters, RFC 2047-encoded (and folded) when it is not plain ASCII."""
    value = clean_header(value)
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def _part(content_type: str, body: str) -> bytes:
    """One text part: 7bit when it is short-lined ASCII, else quoted-printable UTF-8; CRLF lines."""
    lines = LINE_BREAK.split(body)
    if lines[-1] == "":  # a final line break ends the last line, it does not start another
        lines.pop()
    if body.isascii() and not any(CONTROLS.search(line) for line in lines) and all(len(line) < 990 for line in lines):
        encoding, payload = "7bit", "".join(f"{line}\r\n" for line in lines).encode()
    else:
        encoding = "quoted-printable"
        payload = binascii.b2a_qp("".join(f"{line}\n" for line in lines).encode(), istext=True).replace(
            b"\n", b"\r\n")
    head = f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'
    return head.encode() + payload


def email_bytes(config: ChannelSettings, email: Email) -> bytes:
    """The same message as `build_email`, written directly as bytes (RFC 5322 / MIME: text part,
    plus an HTML alternative when there is HTML). A tenth of the cost of building and flattening
    an EmailMessage, which was most of a sender's time per e-mail."""
    from_name = clean_header(config.from_name)
    # Addresses are written as they are (ASCII: the caller sends the others with build_email and
    # SMTPUTF8), the display name encoded by formataddr; only unstructured values go through _header.
    sender = formataddr((from_name, config.from_email), charset="utf-8") if from_name else config.from_email
    addresses = [("From", sender), ("To", clean_header(email.to))]
    if config.reply_to:
        addresses.append(("Reply-To", ascii_address(config.reply_to) or ""))
    headers = [("Subject", email.subject), ("Date", formatdate(usegmt=True)), ("Message-ID", f"<{email.message_id}>"),
               *email.headers.items(), ("MIME-Version", "1.0")]
    head = "".join([*(f"{name}: {value}\r\n" for name, value in addresses),
                    *(f"{name}: {_header(value)}\r\n" for name, value in headers)]).encode()
    text = _part("text/plain", email.text or " ")
    if not email.html:
        return head + text
    boundary = f"=_{uuid.uuid4().hex}"
    return b"".join([
        head, f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
        f"--{boundary}\r\n".encode(), text, f"\r\n--{boundary}\r\n".encode(), _part("text/html", email.html),
        f"\r\n--{boundary}--\r\n".encode()])


class SmtpSender:
    """One SMTP session for a batch: `with SmtpSender(config) as smtp: smtp.send(email)`."""

    def __init__(self, config: ChannelSettings) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSender:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def connect(self) -> None:
        config = self.config
        if not config.smtp_host or not config.from_email:
            raise ProviderError("E-mail is not configured: set the SMTP host and the from address.")
        check_destination(config.smtp_host)
        try:
            if config.smtp_security == SmtpSecurity.TLS:
                connection = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=TIMEOUT_SECONDS,
                                              context=tls_context())
            else:
                connection = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=TIMEOUT_SECONDS)
                if config.smtp_security == SmtpSecurity.STARTTLS:
                    connection.starttls(context=tls_context())
            if config.smtp_username:
                connection.login(config.smtp_username, encryption.decrypt(config.smtp_password_encrypted))
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderError(f"The SMTP server refused the login: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            raise ProviderError(f"Cannot connect to {config.smtp_host}:{config.smtp_port}: {exc}") from None
        if connection.sock is not None:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection = connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (OSError, smtplib.SMTPException):
                self.connection.close()
            self.connection = None

    def send(self, email: Email) -> Result:
        if self.connection is None:
            try:
                self.connect()
            except ProviderError as exc:
                return Result(RETRY, str(exc))
        try:
            if not needs_smtputf8(self.config, email):
                refused = self.connection.sendmail(self.config.from_email, [email.to],
                                                   email_bytes(self.config, email))
            else:  # internationalized addresses: SMTPUTF8 (RFC 6531), the message in UTF-8
                self.connection.ehlo_or_helo_if_needed()
                if not self.connection.has_extn("smtputf8"):
                    return Result(FAILED, "The SMTP server does not accept internationalized addresses (SMTPUTF8).")
                message = build_email(self.config, email)
                data = message.as_bytes(policy=message.policy.clone(utf8=True, linesep="\r\n"))
                refused = self.connection.sendmail(self.config.from_email, [email.to], data,
                                                   mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()), (550, b""))
            return _smtp_refusal(code, reason)
        except smtplib.SMTPResponseException as exc:
            return _smtp_refusal(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:
            self.connection = None  # the session is gone: reconnect for the next message
            return Result(RETRY, f"SMTP connection lost: {exc}")
        if refused:
            code, reason = next(iter(refused.values()))
            return _smtp_refusal(code, reason)
        return Result(SENT)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _smtp_refusal(code: int, reason: Any) -> Result:
    detail = f"SMTP {code} {_text(reason)}".strip()
    if 500 <= code < 600:
        # 550/551/553: the mailbox does not exist or is not accepted: a hard bounce.
        return Result(FAILED, detail, is_hard_bounce=code in (550, 551, 553))
    return Result(RETRY, detail)


# Webhooks --------------------------------------------------------------------------------------

def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with the webhook's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, given: str, *, tolerance: int = 300) -> bool:
    try:
        age = abs(time.time() - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and hmac.compare_digest(signature(secret, timestamp, body), given or "")


class WebhookSender:
    """POSTs JSON payloads to one URL over a kept-alive connection, each signed and carrying its
    idempotency key."""

    def __init__(self, url: str, secret_encrypted: str, *, channel: str) -> None:
        if not url:
            raise ProviderError(f"{channel.upper()} is not configured: set the webhook URL.")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderError("The webhook URL must be http(s)://host/...")
        self.url = url
        self.parts = parts
        self.secret = encryption.decrypt(secret_encrypted)
        self.connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> WebhookSender:
        check_destination(self.parts.hostname or "")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.connection is None:
            port = self.parts.port
            if self.parts.scheme == "https":
                self.connection = http.client.HTTPSConnection(self.parts.hostname, port, timeout=TIMEOUT_SECONDS,
                                                              context=tls_context())
            else:
                self.connection = http.client.HTTPConnection(self.parts.hostname, port, timeout=TIMEOUT_SECONDS)
            self.connection.connect()
            # One request after another on a kept-alive connection: do not let Nagle's algorithm
            # hold a request back waiting for the previous answer's delayed ACK.
            self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.connection

    def post(self, payload: dict[str, Any], idempotency_key: str) -> Result:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: idempotency_key,
                   TIMESTAMP_HEADER: timestamp, "User-Agent": "campaigns-backoffice"}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, timestamp, body)
        path = self.parts.path or "/"
        if self.parts.query:
            path = f"{path}?{self.parts.query}"
        for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
            try:
                connection = self._connection()
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                text = response.read(2000).decode(errors="replace")
                break
            except (OSError, http.client.HTTPException) as exc:
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                if attempt == 1:
                    return Result(RETRY, f"Webhook unreachable: {exc}")
        if 200 <= response.status < 300:
            return Result(SENT)
        detail = f"HTTP {response.status} {text[:200]}".strip()
        if response.status in (408, 425, 429) or response.status >= 500:
            return Result(RETRY, detail)
        return Result(FAILED, detail)


def webhook_payload(channel: str, rendered: dict[str, Any], *, to: Any, message_id: str, sender: str = "",
                    is_proof: bool = False) -> dict[str, Any]:
    """The JSON body of an SMS or push webhook call."""
    if channel == "sms":
        payload = {"type": "sms", "message_id": message_id, "to": to, "from": sender, "text": rendered["text"],
                   "segments": rendered["segments"]}
    else:
        payload = {"type": "push", "message_id": message_id, "tokens": to if isinstance(to, list) else [to],
                   "title": rendered["title"], "body": rendered["body"], "deep_link": rendered["deep_link"],
                   "data": rendered["data"]}
    if is_proof:
        payload["test"] = True
    return payload
