"""Real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP server that record what
arrives, for tests and the delivery benchmark."""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import json
import logging
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.M | re.I)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @functools.cached_property
    def message(self) -> Any:
        """The parsed message (email.message.EmailMessage), parsed when first asked for."""
        return email.message_from_bytes(self.raw, policy=email.policy.SMTP)

    @property
    def message_id(self) -> str:
        match = MESSAGE_ID.search(self.raw)
        return match.group(1).decode() if match else str(self.message["Message-ID"])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.sink.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        with self.sink.lock:
            self.sink.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), raw))
        return "250 Message accepted for delivery"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files in `directory`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class SmtpSink:
    """`with SmtpSink() as sink:` an SMTP server on 127.0.0.1:<sink.port>. With `username`, it
    requires AUTH LOGIN/PLAIN with that user and `password`. With `tls` ("starttls" or "tls")
    and a (certificate, key) pair, it requires STARTTLS, or speaks TLS from the first byte."""

    def __init__(self, *, username: str | None = None, password: str | None = None, tls: str | None = None,
                 certificate: tuple[Path, Path] | None = None, smtputf8: bool = True) -> None:
        self.port = free_port()
        self.messages: list[Received] = []
        self.refuse: set[str] = set()
        self.lock = threading.Lock()
        self.username, self.password = username, password
        kwargs: dict[str, Any] = {}
        if username:
            # aiosmtpd does not count implicit TLS as TLS for AUTH: only STARTTLS sessions are asked for it.
            kwargs = {"auth_required": True, "auth_require_tls": tls == "starttls", "authenticator": self._authenticate}
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*certificate)
            kwargs.update({"tls_context": context, "require_starttls": True} if tls == "starttls"
                          else {"ssl_context": context})
        kwargs["enable_SMTPUTF8"] = smtputf8  # RFC 6531: internationalized addresses
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        # aiosmtpd logs every command at INFO: thousands of lines a second in a bulk send.
        logging.getLogger("mail.log").setLevel(logging.WARNING)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()

    def message_ids(self) -> list[str]:
        with self.lock:
            return [m.message_id for m in self.messages]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpSink:
    """`with HttpSink() as sink:` an HTTP/1.1 server on 127.0.0.1 recording every POST; it answers
    `status` (a callable of the request may decide per request)."""

    status: Any = 200
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # an answer's headers and body must not wait for an ACK
            wbufsize = 64 * 1024             # ...and leave in one write (flushed after each request)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.path, {k: v for k, v in self.headers.items()}, self.rfile.read(length))
                status = sink.status(request) if callable(sink.status) else sink.status
                if status < 300:
                    with sink.lock:
                        sink.requests.append(request)
                body = b'{"ok": true}' if status < 300 else b'{"error": "refused"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> HttpSink:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class _CountingHttp(asyncio.Protocol):
    """HTTP/1.1 keep-alive (pipelining too) for `FastHttpSink`: answers every request 200 and
    notes its Idempotency-Key."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"

    def __init__(self, keys: list[str | None]) -> None:
        self.keys = keys
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length, key = 0, None
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"idempotency-key":
                    key = value.strip().decode()
            if len(self.buffer) < end + 4 + length:
                break  # the body has not all arrived yet
            del self.buffer[: end + 4 + length]
            self.keys.append(key)
            answers += 1
        if answers:
            self.transport.write(self.ANSWER * answers)


class FastHttpSink:
    """`with FastHttpSink() as sink:` a minimal asyncio HTTP/1.1 server on 127.0.0.1 (its own
    thread and event loop) that answers every POST 200 and records its Idempotency-Key
    (`sink.keys`). For the delivery benchmark: much cheaper per request than `HttpSink`
    (http.server), so the sender, not the receiver, is what is measured."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _CountingHttp(self.keys), "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> FastHttpSink:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
