"""The e-mail as written on the wire (providers.email_bytes / build_email over SMTPUTF8), read
back by the email package from what a real SMTP server on loopback received: addresses are never
RFC 2047-encoded (IDN domains in punycode, UTF-8 local parts over SMTPUTF8), control characters
do not reach headers, the text body keeps its form feeds and separators, the date is in GMT."""

from __future__ import annotations

import email.parser
import email.policy
import re

from apps.channels import providers
from apps.channels.models import ChannelSettings
from tests.channels.sinks import SmtpSink


def config(sink: SmtpSink, **values) -> ChannelSettings:
    return ChannelSettings(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_security="none",
                           from_email="news@acme.test", **values)


def mail(**values) -> providers.Email:
    return providers.Email(**{"to": "ann@example.test", "subject": "Hello", "html": "", "text": "Hi",
                              "message_id": "k1@mail.acme.test", **values})


def send(sink: SmtpSink, settings: ChannelSettings, message: providers.Email) -> providers.Result:
    with providers.SmtpSender(settings) as smtp:
        return smtp.send(message)


def parsed(raw: bytes):
    return email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)


def head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_an_idn_reply_to_is_written_in_punycode_not_as_an_encoded_word():
    with SmtpSink() as sink:
        assert send(sink, config(sink, reply_to="support@bücher.de"), mail()).is_sent
    raw = sink.messages[0].raw
    assert b"Reply-To: support@xn--bcher-kva.de\r\n" in raw and b"=?" not in head(raw)
    (address,) = parsed(raw)["Reply-To"].addresses
    assert (address.username, address.domain) == ("support", "xn--bcher-kva.de")


def test_a_utf8_reply_to_goes_over_smtputf8_in_utf8_or_fails_without_it():
    with SmtpSink() as sink:  # offers SMTPUTF8
        assert send(sink, config(sink, reply_to="jörg@bücher.de", from_name="Acmé"), mail()).is_sent
    raw = sink.messages[0].raw
    assert "Reply-To: jörg@bücher.de".encode() in raw
    message = email.parser.Parser(policy=email.policy.default).parsestr(raw.decode())  # UTF-8 headers
    (address,) = message["Reply-To"].addresses
    assert (address.username, address.domain) == ("jörg", "bücher.de")
    assert message["From"].addresses[0].display_name == "Acmé" and message["Subject"] == "Hello"
    assert message["Date"].datetime.utcoffset().total_seconds() == 0
    # A server without SMTPUTF8 cannot carry it: the message fails, nothing is encoded instead.
    with SmtpSink(smtputf8=False) as sink:
        result = send(sink, config(sink, reply_to="jörg@bücher.de"), mail())
    assert result.outcome == providers.FAILED and "SMTPUTF8" in result.detail and sink.messages == []


def test_control_characters_do_not_reach_the_headers():
    subject = "Hi\x00 Ann\x1b[31m \x7fnews\r\nBcc: victim@example.test\x0b\x0c end\ttab"
    with SmtpSink() as sink:
        assert send(sink, config(sink, from_name="Ac\x00me\x1b"), mail(subject=subject)).is_sent
        assert send(sink, config(sink), mail(subject=f"Café {subject}", message_id="k2@mail.acme.test")).is_sent
    for received in sink.messages:
        lines = head(received.raw).split(b"\r\n")
        assert not [line for line in lines if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", line)]
        message = parsed(received.raw)
        assert message["Bcc"] is None
        assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", str(message["Subject"]))
    first, second = (parsed(r.raw) for r in sink.messages)
    # Each run of control characters became one space.
    assert first["Subject"] == "Hi  Ann [31m  news Bcc: victim@example.test  end\ttab"
    assert first["From"].addresses[0].display_name == "Ac me"
    assert second["Subject"] == "Café Hi  Ann [31m  news Bcc: victim@example.test  end\ttab"


def test_the_text_body_splits_lines_only_on_cr_and_lf():
    text = "page one\fpage two\x0bvertical\x1cfile\x1dgroup\x1erecord\u2028still\r\nline 2\rline 3\nline 4\n"
    with SmtpSink() as sink:
        assert send(sink, config(sink), mail(text=text)).is_sent
        assert send(sink, config(sink), mail(text="plain\fascii\nnext", message_id="k2@mail.acme.test")).is_sent
    unicode_body, ascii_body = (parsed(r.raw).get_body(("plain",)).get_content().replace("\r\n", "\n")
                                for r in sink.messages)
    assert unicode_body == text.replace("\r\n", "\n").replace("\r", "\n")
    assert ascii_body == "plain\fascii\nnext\n"


def test_the_date_is_in_gmt():
    raw = providers.email_bytes(ChannelSettings(from_email="news@acme.test"), mail())
    date = parsed(raw)["Date"]
    assert re.search(rb"^Date: .* GMT\r$", raw, re.M) and b"-0000" not in raw
    assert date.datetime.utcoffset().total_seconds() == 0
    # build_email (the SMTPUTF8 path): the email package writes GMT as +0000, not -0000 (unknown).
    message = providers.build_email(ChannelSettings(from_email="news@acme.test"), mail())
    assert message["Date"].datetime.utcoffset().total_seconds() == 0 and not message["Date"].endswith("-0000")
