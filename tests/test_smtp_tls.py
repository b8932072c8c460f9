"""Pipelined mail through TLS: STARTTLS with AUTH, and smtps:// (TLS from
the first byte), against aiosmtpd servers that announce PIPELINING after
the upgrade.  smtp.c sends through libcurl's TLS (curl_easy_send/recv) on
connections libcurl opened, upgraded and logged in: every message arrives
once and whole, the secretariat's digest of every late unit (the largest
message, written in several pieces) included."""
import email
import email.policy
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from conftest import free_port, make_config, server_tls
from test_notices_smtp import wait_for, rows

N = 150   # units: a digest of 150 late units, about 25 kB (TLS records are 16)

UNITS = "".join(f"\n[unit xa-{i:03d}]\nname = Ủy ban nhân dân xã Tân Hòa {i}\n"
                f"email = xa{i:03d}@example.vn\n" for i in range(N))

CYCLES = """
[policy p]
at       = 08:00
remind   = 0d
escalate = +1d secretariat

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
period = 12-15 .. 03-13
policy = p
units  = *
"""


class PipeSink:
    def __init__(self):
        self.messages, self.logins, self.ehlo_tls = [], [], []
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        # what a careful server does: PIPELINING once the line is private
        tls = session.ssl is not None or \
            server.transport.get_extra_info("ssl_object") is not None
        self.ehlo_tls.append(tls)
        if tls:
            return responses[:-1] + ["250-PIPELINING", responses[-1]]
        return responses

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content,
                                       policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 2.0.0 Ok: queued"

    def auth(self, server, session, envelope, mechanism, data):
        self.logins.append(data.login.decode())
        return AuthResult(success=data.login == b"vanthu" and
                          data.password == "mật-khẩu-2".encode())


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return server_tls(tmp_path_factory.mktemp("tls"))


def run(daemon_factory, tmp_path, port, sink, url, extra):
    (tmp_path / "smtp.pass").write_text("mật-khẩu-2\n")
    mail = (f"transport = smtp\nurl = {url}\n"
            "from = Thường trực Ban Chỉ đạo 138 <thuongtruc@example.vn>\n"
            "user = vanthu\npassword_file = smtp.pass\ntls_verify = no\n"
            "parallel = 3\n" + extra)
    conf = make_config(tmp_path, port, mail=mail, cycles=CYCLES, units=UNITS)
    # the reminders on the due date, then the digest a day later
    d = daemon_factory(conf, port, now="2024-03-13T07:59:59").start()
    wait_for(lambda: rows(tmp_path, "select count(*) from outbox where "
                          "state = 'sent'")[0][0] >= N, timeout=60,
             what="the reminders")
    d.stop()
    d = daemon_factory(conf, port, now="2024-03-14T07:59:59").start()
    wait_for(lambda: rows(tmp_path, "select count(*) from outbox where "
                          "state = 'sent'")[0][0] >= 2 * N, timeout=60,
             what="the escalations")
    d.stop()
    states = rows(tmp_path, "select state, count(*) from outbox group by 1")
    assert states == [("sent", 2 * N)], states

    to_units = [m for r, m in sink.messages if r != ["thuongtruc@example.vn"]]
    digests = [m for r, m in sink.messages if r == ["thuongtruc@example.vn"]]
    ids = [m["Message-ID"] for m in to_units]
    assert len(ids) == N and len(set(ids)) == N
    got = sorted(r[0] for r, m in sink.messages if r != ["thuongtruc@example.vn"])
    assert got == [f"xa{i:03d}@example.vn" for i in range(N)]
    for m in to_units:
        assert "Ủy ban nhân dân xã Tân Hòa" in m.get_body().get_content()
    # one digest (or a few) naming every late unit, whole
    text = "".join(m.get_body().get_content() for m in digests)
    assert digests and all(f"Ủy ban nhân dân xã Tân Hòa {i}\n" in text or
                           f"Ủy ban nhân dân xã Tân Hòa {i} " in text or
                           f"Ủy ban nhân dân xã Tân Hòa {i}," in text or
                           f"Ủy ban nhân dân xã Tân Hòa {i}\r" in text
                           for i in range(N)), text[:2000]
    assert sum(len(m.as_bytes()) for m in digests) > 20000
    assert sink.logins and set(sink.logins) == {"vanthu"}
    return sink


def test_starttls_auth_pipelined(daemon_factory, tmp_path, port, cert):
    sink = PipeSink()
    p = free_port()
    c = Controller(sink, hostname="127.0.0.1", port=p, tls_context=cert,
                   require_starttls=True, authenticator=sink.auth,
                   auth_require_tls=True)
    c.start()
    try:
        run(daemon_factory, tmp_path, port, sink, f"smtp://127.0.0.1:{p}",
            "starttls = required\n")
        # every session said EHLO again after STARTTLS, and used it
        assert False in sink.ehlo_tls and True in sink.ehlo_tls
    finally:
        c.stop()


def test_smtps_auth_pipelined(daemon_factory, tmp_path, port, cert):
    sink = PipeSink()
    p = free_port()
    # aiosmtpd knows TLS only from STARTTLS: AUTH must be allowed
    # "without" it here, though the line is TLS from the first byte
    c = Controller(sink, hostname="127.0.0.1", port=p, ssl_context=cert,
                   authenticator=sink.auth, auth_require_tls=False)
    c.start()
    try:
        run(daemon_factory, tmp_path, port, sink, f"smtps://127.0.0.1:{p}", "")
        assert sink.ehlo_tls and all(sink.ehlo_tls)
    finally:
        c.stop()
