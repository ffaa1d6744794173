"""The e-mail notifier against a real SMTP server (aiosmtpd) on 127.0.0.1.

The server runs in the test's own event loop. TLS uses a self-signed certificate made with
`openssl` for this test session; the notifier trusts it through `ca_file`, so certificate
checking stays on, as in production.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError
from structlog.testing import capture_logs

from bulkwatch.model import TaskStatus
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import DeliveryError
from bulkwatch.notifiers.email import EmailNotifier, EmailNotifierConfig
from bulkwatch.store.base import DeliveryStatus
from helpers.notifier_support import (
    RESULT_URL,
    delivery_harness,
    outgoing,
    store_change,
    task_change,
)

USER, PASSWORD = "bulkwatch", "pw-9c2e-s3cr3t"
TO = ["ops@example.com", "Data Team <data@example.com>"]
TO_ADDRESSES = ["ops@example.com", "data@example.com"]


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1, made once per test session."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    made = Cert(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(made.key), "-out", str(made.cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return made


@dataclass
class Mailbox:
    """The SMTP server's handler: stores accepted mail; scripted refusals first."""

    port: int = 0
    mails: list[Envelope] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)  # answers to DATA, then 250
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> RCPT answer

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        self.mails.append(envelope)
        return "250 Message accepted"

    def parsed(self, index: int = 0) -> EmailMessage:
        content = self.mails[index].original_content
        assert content is not None
        # SMTP carries CRLF line ends; parse the mail as it would be stored on disk.
        message = message_from_bytes(content.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers a failure with 535 itself.
    return AuthResult(success=ok, handled=False)


@asynccontextmanager
async def smtp_server(
    factory: Callable[[Mailbox], SMTP], tls: ssl.SSLContext | None = None
) -> AsyncIterator[Mailbox]:
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: factory(mailbox), "127.0.0.1", 0, ssl=tls)
    mailbox.port = server.sockets[0].getsockname()[1]
    try:
        yield mailbox
    finally:
        server.close()
        await server.wait_closed()


def plain_server() -> AbstractAsyncContextManager[Mailbox]:
    return smtp_server(lambda box: SMTP(box, hostname="127.0.0.1"))


def starttls_server(cert: Cert, *, auth: bool = True) -> AbstractAsyncContextManager[Mailbox]:
    return smtp_server(
        lambda box: SMTP(
            box,
            hostname="127.0.0.1",
            tls_context=cert.server_context(),
            require_starttls=True,
            authenticator=authenticator if auth else None,
            auth_require_tls=True,
        )
    )


def notifier(port: int, **fields: Any) -> EmailNotifier:
    config = EmailNotifierConfig.model_validate(
        {
            "name": "mail",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from": "bulkwatch@example.com",
            "to": TO,
            "timeout": 5,
            **fields,
        }
    )
    return EmailNotifier(config)


def tls_fields(cert: Cert, security: str = "starttls", **extra: Any) -> dict[str, Any]:
    return {"security": security, "ca_file": str(cert.cert), **extra}


async def test_plain_smtp_sends_one_mail_with_text_and_html_parts() -> None:
    event = outgoing(task_change())
    async with plain_server() as box:
        await notifier(box.port).send(event)

    (mail,) = box.mails
    assert mail.mail_from == "bulkwatch@example.com"
    assert mail.rcpt_tos == ["ops@example.com", "data@example.com"]
    message = box.parsed()
    assert message["Subject"] == "[bulkwatch] lazza-main: task d6ca13c4 RUNNING → COMPLETED"
    assert message["Message-ID"] == f"<{event.id}@bulkwatch>"
    assert message["X-Bulkwatch-Event-Type"] == "bulkwatch.task.completed"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    body = text.get_content()
    assert "Status: RUNNING → COMPLETED\n" in body
    assert f"Result file: {RESULT_URL}\n" in body
    assert f"bulkwatch event {event.id} (bulkwatch.task.completed)" in body
    markup = html.get_content()
    escaped = RESULT_URL.replace("&", "&amp;")
    assert f'<a href="{escaped}">{escaped}</a>' in markup
    assert "Status: RUNNING → COMPLETED\n" in markup


async def test_custom_templates_shape_subject_and_body() -> None:
    async with plain_server() as box:
        hook = notifier(box.port, subject="$store DOWN\nInjected: header", body="Why: $reason")
        await hook.send(outgoing(store_change()))
    message = box.parsed()
    assert message["Subject"] == "lazza-main DOWN Injected: header"
    assert message["Injected"] is None
    text = message.get_body(("plain",))
    assert text is not None
    assert text.get_content() == "Why: HTTP 401: invalid token\n"


async def test_starttls_with_login_delivers(cert: Cert) -> None:
    async with starttls_server(cert) as box:
        hook = notifier(box.port, **tls_fields(cert, username=USER, password=PASSWORD))
        await hook.send(outgoing())
    assert len(box.mails) == 1


async def test_implicit_tls_delivers(cert: Cert) -> None:
    def factory(box: Mailbox) -> SMTP:
        return SMTP(box, hostname="127.0.0.1")

    async with smtp_server(factory, tls=cert.server_context()) as box:
        await notifier(box.port, **tls_fields(cert, "ssl")).send(outgoing())
    assert len(box.mails) == 1


async def test_wrong_password_is_a_permanent_failure_without_the_password(cert: Cert) -> None:
    async with starttls_server(cert) as box:
        hook = notifier(box.port, **tls_fields(cert, username=USER, password="wrong-pw"))
        with pytest.raises(DeliveryError) as caught:
            await hook.send(outgoing())
    assert str(caught.value).startswith("SMTP login refused: 535")
    assert caught.value.permanent
    assert "wrong-pw" not in str(caught.value)
    assert box.mails == []


async def test_an_untrusted_certificate_is_a_retryable_tls_failure(cert: Cert) -> None:
    async with starttls_server(cert, auth=False) as box:
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            await notifier(box.port, security="starttls").send(outgoing())
        assert not caught.value.permanent
        await notifier(box.port, security="starttls", tls_verify=False).send(outgoing())
    assert len(box.mails) == 1


async def test_a_server_without_starttls_is_a_permanent_failure() -> None:
    async with plain_server() as box:
        with pytest.raises(DeliveryError) as caught:
            await notifier(box.port, security="starttls").send(outgoing())
    assert str(caught.value) == "the SMTP server does not offer STARTTLS"
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("data_reply", "permanent"),
    [("451 4.3.0 Try again later", False), ("554 5.6.0 Message refused", True)],
)
async def test_data_replies_decide_retry_by_their_class(data_reply: str, permanent: bool) -> None:
    async with plain_server() as box:
        box.data_replies = [data_reply]
        with pytest.raises(DeliveryError) as caught:
            await notifier(box.port).send(outgoing())
    assert str(caught.value) == f"SMTP {data_reply}"
    assert caught.value.permanent is permanent


async def test_every_recipient_refused_is_permanent_and_names_them() -> None:
    async with plain_server() as box:
        box.refuse = dict.fromkeys(TO_ADDRESSES, "550 5.1.1 No such user")
        with pytest.raises(DeliveryError) as caught:
            await notifier(box.port).send(outgoing())
    assert str(caught.value) == (
        "every recipient was refused: ops@example.com: 550 5.1.1 No such user; "
        "data@example.com: 550 5.1.1 No such user"
    )
    assert caught.value.permanent


async def test_some_recipients_refused_is_delivered_with_a_warning() -> None:
    async with plain_server() as box:
        box.refuse = {"data@example.com": "550 5.1.1 No such user"}
        with capture_logs() as logs:
            await notifier(box.port).send(outgoing())
    assert box.mails[0].rcpt_tos == ["ops@example.com"]
    (warning,) = logs
    assert warning["refused"] == {"data@example.com": 550}


async def test_a_closed_port_is_a_retryable_failure() -> None:
    with pytest.raises(DeliveryError, match=r"^SMTP error: ") as caught:
        await notifier(1).send(outgoing())
    assert not caught.value.permanent


async def test_failure_then_success_goes_through_the_dispatcher(tmp_path: Path) -> None:
    async with plain_server() as box, delivery_harness(tmp_path) as h:
        box.data_replies = ["421 4.3.2 Service shutting down"]
        await h.enqueue(task_change(TaskStatus.FAILED), "mail")
        failed = await h.retry_then_deliver(h.dispatcher(notifier(box.port)))
        assert failed.last_error == "SMTP 421 4.3.2 Service shutting down"
        assert len(box.mails) == 1
        assert (h.count("mail", "retry"), h.count("mail", "delivered")) == (1, 1)


async def test_a_refused_login_is_dead_lettered_at_once(tmp_path: Path, cert: Cert) -> None:
    async with starttls_server(cert) as box, delivery_harness(tmp_path) as h:
        await h.enqueue(task_change(), "mail")
        hook = notifier(box.port, **tls_fields(cert, username=USER, password="nope"))
        assert await h.dispatcher(hook).run_once() == 1
        error = (await h.only(DeliveryStatus.DEAD)).last_error
        assert error is not None
        assert error.startswith("SMTP login refused: 535")
        assert h.count("mail", "dead") == 1


def config(**fields: Any) -> EmailNotifierConfig:
    base: dict[str, Any] = {"name": "mail", "host": "smtp.example.com", "from": "a@example.com"}
    return EmailNotifierConfig.model_validate({**base, "to": ["b@example.com"], **fields})


@pytest.mark.parametrize(("security", "port"), [("none", 25), ("starttls", 587), ("ssl", 465)])
def test_port_defaults_follow_security(security: str, port: int) -> None:
    assert config(security=security).effective_port == port
    assert config(security=security, port=2525).effective_port == 2525


def test_password_file_is_read_and_no_password_is_shown(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    kind = registry.get("email")
    assert kind is not None
    loaded = kind.config_model.model_validate(
        {
            "name": "mail",
            "type": "email",
            "host": "smtp.example.com",
            "from": "a@example.com",
            "to": ["b@example.com"],
            "username": USER,
            "password_file": str(secret),
        }
    )
    assert isinstance(loaded, EmailNotifierConfig)
    assert loaded.password is not None
    assert loaded.password.get_secret_value() == PASSWORD
    assert loaded.from_ == "a@example.com"
    assert PASSWORD not in repr(loaded)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"to": []}, "at least 1 item"),
        ({"to": ["not-an-address"]}, "is not an e-mail address"),
        ({"from": "bulkwatch"}, "is not an e-mail address"),
        ({"security": "tls"}, "'none', 'starttls' or 'ssl'"),
        ({"username": USER}, "username and password (or password_file) go together"),
        ({"password": PASSWORD}, "username and password (or password_file) go together"),
        (
            {"username": USER, "password": PASSWORD, "security": "none"},
            "a login needs security: starttls or ssl",
        ),
        ({"username": USER, "password": PASSWORD, "password_file": "/x"}, "not both"),
        ({"username": USER, "password_file": "/nonexistent/pw"}, "password_file: cannot read"),
        ({"ca_file": "/nonexistent/ca.pem"}, "does not exist"),
        ({"subject": "$nope"}, "unknown placeholder $nope"),
    ],
)
def test_config_problems_never_show_the_password(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**fields)
    message = str(caught.value)
    assert re.search(re.escape(expected), message)
    assert PASSWORD not in message


async def test_the_html_part_escapes_what_the_platform_sent() -> None:
    event = outgoing(task_change(TaskStatus.FAILED, reason="<script>alert(1)</script> & more"))
    async with plain_server() as box:
        await notifier(box.port).send(event)
    html = box.parsed().get_body(("html",))
    assert html is not None
    markup = html.get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in markup
    assert "<script>" not in markup
