"""Notices end to end: the real daemon, a real SMTP server (aiosmtpd), a
real HTTP receiver for webhooks; time driven by --now/--speed, not sleeps
of real deadlines."""
import base64
import email
import email.policy
import hashlib
import hmac
import json
import os
import random
import signal
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from conftest import ctl, free_port, init_state, make_config, self_signed

# 07:59 on Wednesday 06/03/2024: the first reminder of q1/2024-03-13 (-7d at
# 08:00) is one simulated minute away.
BEFORE = "2024-03-06T07:59"


class Sink:
    """An SMTP server that stores what it accepts and can refuse on cue."""

    def __init__(self, fail=None, delay=0.0):
        self.messages, self.attempts = [], []
        self.fail = fail  # fn(message) -> None (accept) or "4xx ..."/"5xx ..."
        self.delay = delay  # seconds each DATA takes: a slow server
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            import asyncio
            await asyncio.sleep(self.delay)
        msg = email.message_from_bytes(envelope.content,
                                       policy=email.policy.default)
        with self.lock:
            self.attempts.append(msg)
            answer = self.fail(msg) if self.fail else None
            if answer is None:
                self.messages.append((envelope.rcpt_tos, msg))
                return "250 OK"
            return answer


@pytest.fixture
def smtp():
    servers = []

    def start(fail=None, delay=0.0):
        sink = Sink(fail, delay)
        port = free_port()
        c = Controller(sink, hostname="127.0.0.1", port=port)
        c.start()
        servers.append(c)
        sink.port = port
        return sink

    yield start
    for c in servers:
        c.stop()


def smtp_mail(port, extra=""):
    return (f"transport = smtp\nurl = smtp://127.0.0.1:{port}\nstarttls = no\n"
            "from = Thường trực Ban Chỉ đạo 138 <thuongtruc@example.vn>\n"
            "retry_min = 10m\nretry_max = 1h\ngive_up = 1d\n" + extra)


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_reminders_reach_smtp_with_correct_headers(daemon_factory, tmp_path,
                                                   port, smtp):
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    # tu-phap already reported: it must get nothing
    init_state(conf, port, now=BEFORE)
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13", now="2024-03-05T10:00")
    assert r.returncode == 0, r.stderr
    d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    wait_for(lambda: len(sink.messages) >= 3, what="3 reminders")
    time.sleep(0.5)  # a fourth (wrong) one would arrive with the others
    d.stop()
    rcpts = sorted(r[0] for r, _ in sink.messages)
    assert rcpts == ["bcd.tanloi@example.vn", "ldtbxh@example.vn",
                     "mttq@example.vn"]
    for _, msg in sink.messages:
        assert "Báo cáo quý I" in msg["Subject"]
        assert msg["From"].addresses[0].display_name == \
            "Thường trực Ban Chỉ đạo 138"
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["MIME-Version"] == "1.0"
        assert msg["Message-ID"].startswith("<") and msg["Date"]
        body = msg.get_content()
        assert "13/03/2024" in body
        assert not msg.defects
        # the raw Subject is RFC 2047-encoded ASCII
        raw = msg.as_bytes().decode("ascii")
        assert "=?utf-8?" in raw.lower()


def test_retry_keeps_message_id_then_permanent_failure(daemon_factory,
                                                        tmp_path, port, smtp):
    tries = {}

    def fail(msg):
        to = str(msg["To"])
        tries[to] = tries.get(to, 0) + 1
        if "mttq" in to:
            return "550 5.1.1 mailbox unknown"
        if tries[to] <= 2:
            return "451 4.3.0 try again later"
        return None

    sink = smtp(fail)
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    # 600x: a 10-minute backoff takes one real second
    d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
    wait_for(lambda: len(sink.messages) >= 3, timeout=60, what="retried mails")
    d.stop()
    by_to = {}
    for m in sink.attempts:
        by_to.setdefault(str(m["To"]), []).append(m["Message-ID"])
    for to, ids in by_to.items():
        assert len(set(ids)) == 1, (to, ids)  # same Message-ID every retry
    assert len(by_to["tuphap@example.vn"]) == 3
    assert len(by_to["mttq@example.vn"]) == 1  # 5xx: no retry
    r = ctl(conf, "status", now="2024-03-06T09:00")
    failed = [l.split("\t") for l in r.stdout.splitlines()
              if l.startswith("failed\t")]
    assert [f[2] for f in failed] == ["mttq"], r.stdout
    assert "550" in failed[0][5]
    assert "550" in d.logtext()


def test_dead_mail_server_does_not_stall_feeds(daemon_factory, tmp_path, port):
    dead = free_port()  # nothing listens there
    conf = make_config(tmp_path, port, mail=smtp_mail(dead))
    d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    time.sleep(1.5)
    t0 = time.monotonic()
    st, _, _ = d.get("/calendar.ics")
    assert st == 200 and time.monotonic() - t0 < 2
    d.stop()
    db = sqlite3.connect(tmp_path / "state.db")
    rows = db.execute("select state, attempts from outbox").fetchall()
    assert rows and all(s == "pending" for s, _ in rows)
    assert any(a >= 1 for _, a in rows)


class Receiver(BaseHTTPRequestHandler):
    got = []

    def do_POST(self):
        n = int(self.headers["Content-Length"])
        Receiver.got.append((self.path, dict(self.headers), self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_webhook_signed_json(daemon_factory, tmp_path, port, smtp):
    sink = smtp()
    hport = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", hport), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Receiver.got = []
    # Standard Webhooks key format: "whsec_" + base64 of the raw key
    secret = b"test-key-\x00\xff-bytes"
    (tmp_path / "hook.key").write_text(
        "whsec_" + base64.b64encode(secret).decode() + "\n")
    units = f"""
[unit p-tan-loi]
name    = Ban Chỉ đạo phường Tân Lợi
email   = bcd.tanloi@example.vn
head    = chutich.tanloi@example.vn
webhook = http://127.0.0.1:{hport}/hooks/tan-loi
"""
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port), units=units,
                       webhook="secret_file = hook.key\ntimeout = 5s")
    d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    wait_for(lambda: Receiver.got, what="webhook")
    d.stop()
    srv.shutdown()
    path, headers, body = Receiver.got[0]
    assert path == "/hooks/tan-loi"
    obj = json.loads(body)
    assert obj["event"] == "reminder"
    assert obj["unit"] == "p-tan-loi"
    assert obj["occurrence"] == "q1/2024-03-13"
    assert obj["days"] == -7
    assert obj["due"].startswith("2024-03-13")
    assert "Báo cáo quý I" in obj["text"]
    h = {k.lower(): v for k, v in headers.items()}
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + body
    want = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest())
    assert f"v1,{want.decode()}" in h["webhook-signature"].split()


def test_maildir_transport_like_make_run(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port)
    d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    new = tmp_path / "mail" / "new"
    wait_for(lambda: new.is_dir() and len(list(new.iterdir())) >= 4,
             what="4 mails in the Maildir")
    d.stop()
    files = list(new.iterdir())
    msgs = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            for f in files]
    assert sorted(str(m["To"]) for m in msgs) == [
        "bcd.tanloi@example.vn", "ldtbxh@example.vn", "mttq@example.vn",
        "tuphap@example.vn"]
    assert not list((tmp_path / "mail" / "tmp").iterdir())


def test_no_resend_across_restart_and_reload(daemon_factory, tmp_path, port,
                                             smtp):
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    wait_for(lambda: len(sink.messages) >= 4, what="first reminders")
    d.reload()
    d.stop()
    n = len(sink.messages)
    # the same simulated minute again: nothing new may be sent
    d2 = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    time.sleep(2)
    d2.stop()
    assert len(sink.messages) == n == 4


def test_catch_up_sends_only_latest_missed_step(daemon_factory, tmp_path,
                                                port, smtp):
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    d = daemon_factory(conf, port, now="2024-03-01T09:00").start()
    d.stop()  # last scan recorded at 01/03
    # back 9 days later (after remind -7d, -3d, -1d, 0d and escalate +1d)
    d = daemon_factory(conf, port, now="2024-03-14T09:00", speed=1).start()
    wait_for(lambda: len(sink.messages) >= 4, what="catch-up")
    time.sleep(1)
    d.stop()
    steps = [m["X-Cutoffd-Notice"].split()[2] for _, m in sink.messages]
    assert set(steps) == {"escalate+1d"}, steps
    assert len(steps) == 4  # one per unit, to the head


def test_kill9_loses_nothing(daemon_factory, tmp_path, port, smtp):
    """1,000 notices; kill -9 at random points; restart; count."""
    # a slow server (20 ms a message): sending takes seconds, so the
    # kills land while transfers are in flight
    sink = smtp(delay=0.02)
    units = "".join(f"\n[unit u{i:04d}]\nname = Đơn vị {i}\n"
                    f"email = u{i:04d}@example.vn\n" for i in range(1000))
    policy = """
[policy standard]
at     = 08:00
remind = 0d

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
units  = *
"""
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port, "parallel = 8\n"),
                       cycles=policy, units=units)
    rnd = random.Random(1234)
    kills = 0
    d = daemon_factory(conf, port, now="2024-03-13T07:59", speed=60).start()
    during = []
    for _ in range(4):
        time.sleep(rnd.uniform(1.2, 2.0))
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        kills += 1
        during.append(len(sink.messages))
        d = daemon_factory(conf, port, now="2024-03-13T07:59", speed=60).start()
    wait_for(lambda: len({m["X-Cutoffd-Notice"] for _, m in sink.messages})
             >= 1000, timeout=180, what="1000 distinct notices")
    time.sleep(1)
    d.stop()
    keys = [m["X-Cutoffd-Notice"] for _, m in sink.messages]
    distinct = set(keys)
    dups = len(keys) - len(distinct)
    print(f"kill -9 x{kills} (after {during} messages): {len(distinct)} "
          f"distinct, {dups} duplicates")
    # the kills really interrupted the sending
    assert any(0 < n < 1000 for n in during), during
    assert len(distinct) == 1000  # 0 lost
    assert dups <= 8 * kills  # at most `parallel` in flight per kill


def test_digest_to_secretariat(daemon_factory, tmp_path, port, smtp):
    """escalate+3d goes to heads one by one, and to the secretariat as one
    digest naming every late unit."""
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    init_state(conf, port, now="2024-03-16T07:59:50")
    ctl(conf, "received", "mttq", "q1/2024-03-13", now="2024-03-12T10:00")
    # +3d is Saturday 16/03: sent (send_days = workdays) on Monday 18/03
    d = daemon_factory(conf, port, now="2024-03-18T07:59:50", speed=10).start()
    wait_for(lambda: len(sink.messages) >= 4, what="heads and digest")
    time.sleep(1)
    d.stop()
    to_sec = [m for r, m in sink.messages if r == ["thuongtruc@example.vn"]]
    assert len(to_sec) == 1, [r for r, _ in sink.messages]
    body = to_sec[0].get_content()
    for name in ("Phòng Tư pháp", "Phòng Lao động - Thương binh và Xã hội",
                 "Ban Chỉ đạo phường Tân Lợi"):
        assert name in body
    assert "Ủy ban Mặt trận" not in body  # it reported
    heads = sorted(r[0] for r, _ in sink.messages if r != ["thuongtruc@example.vn"])
    assert heads == ["chutich.tanloi@example.vn", "truongphong.ldtbxh@example.vn",
                     "truongphong.tuphap@example.vn"]


class BadServer:
    """A TCP server that greets and then drops the connection, or stalls."""

    def __init__(self, mode):
        import socket as s
        self.sock = s.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.mode, self.conns, self.stop = mode, [], threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            if self.mode == "drop":
                c.sendall(b"220 flaky.example ESMTP\r\n")
                c.close()
            # "stall": accept and never say a word

    def close(self):
        self.stop.set()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_flaky_server_is_retried(daemon_factory, tmp_path, port, mode):
    bad = BadServer(mode)
    try:
        conf = make_config(tmp_path, port,
                           mail=smtp_mail(bad.port, "timeout = 2s\n"))
        d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()

        def attempted():
            db = sqlite3.connect(tmp_path / "state.db")
            try:
                return db.execute("select count(*) from outbox where "
                                  "attempts >= 1 and state = 'pending' and "
                                  "last_error is not null").fetchone()[0] >= 4
            finally:
                db.close()
        # the feeds stay served while the mail server misbehaves
        t0 = time.monotonic()
        assert d.get("/calendar.ics")[0] == 200
        assert time.monotonic() - t0 < 1.5
        wait_for(attempted, timeout=30, what="deferred attempts")
        assert "deferred" in d.logtext()
        r = ctl(conf, "status", now="2024-03-06T08:01")
        retrying = [l for l in r.stdout.splitlines()
                    if l.startswith("retrying\t")]
        assert len(retrying) >= 4, r.stdout
        assert d.stop() == 0
    finally:
        bad.close()


@pytest.fixture
def tls_cert(tmp_path):
    """A self-signed certificate for 127.0.0.1."""
    return self_signed(tmp_path)


def start_tls_sink(crt, key, logins):
    import ssl
    from aiosmtpd.smtp import AuthResult

    def auth(server, session, envelope, mechanism, data):
        logins.append((mechanism, data.login.decode(), data.password.decode()))
        ok = data.login == b"vanthu" and data.password == "mật-khẩu-1".encode()
        return AuthResult(success=ok)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    sink = Sink()
    port = free_port()
    c = Controller(sink, hostname="127.0.0.1", port=port, tls_context=ctx,
                   require_starttls=True, authenticator=auth,
                   auth_require_tls=True)
    c.start()
    sink.port, sink.controller = port, c
    return sink


def test_starttls_auth_and_verification(daemon_factory, tmp_path, port,
                                        tls_cert):
    crt, key = tls_cert
    logins = []
    sink = start_tls_sink(crt, key, logins)
    try:
        (tmp_path / "smtp.pass").write_text("mật-khẩu-1\n")
        mail = smtp_mail(sink.port).replace("starttls = no", "starttls = required")
        # 1. certificate verification is on by default: a self-signed
        # server is refused and nothing is delivered
        conf = make_config(tmp_path, port, mail=mail +
                           "user = vanthu\npassword_file = smtp.pass\n")
        d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()

        def attempted():
            db = sqlite3.connect(tmp_path / "state.db")
            try:
                return db.execute("select count(*) from outbox where "
                                  "attempts >= 1").fetchone()[0] >= 4
            finally:
                db.close()
        wait_for(attempted, what="refused TLS attempts")
        d.stop()
        assert sink.messages == [] and logins == []
        # 2. trusting it (tls_verify = no): STARTTLS, AUTH, delivery
        (tmp_path / "state.db").unlink()
        for f in tmp_path.glob("state.db-*"):
            f.unlink()
        conf = make_config(tmp_path, port, mail=mail +
                           "user = vanthu\npassword_file = smtp.pass\n"
                           "tls_verify = no\n")
        d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()
        wait_for(lambda: len(sink.messages) >= 4, what="mail over STARTTLS")
        d.stop()
        assert logins and all(l[1] == "vanthu" for l in logins)
    finally:
        sink.controller.stop()


@pytest.fixture
def small_fs(tmp_path):
    """A 256 kB tmpfs (needs root; skipped elsewhere)."""
    import subprocess
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                        str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.decode())
    yield mnt
    subprocess.run(["umount", str(mnt)])


def test_full_disk_defers_then_delivers(daemon_factory, tmp_path, port,
                                        small_fs):
    """Maildir on a full file system: every notice is deferred with a clear
    error, nothing is lost, and all arrive once there is room again."""
    maildir = small_fs / "mail"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass                    # ENOSPC: full
    finally:
        os.close(fd)
    mail = (f"transport = maildir\nmaildir = {maildir}\n"
            "from = Thường trực <thuongtruc@example.vn>\n"
            "retry_min = 1m\nretry_max = 2m\n")
    conf = make_config(tmp_path, port, mail=mail)
    d = daemon_factory(conf, port, now="2024-03-06T07:59:58", speed=10).start()

    def deferred():
        db = sqlite3.connect(tmp_path / "state.db")
        try:
            return db.execute("select count(*) from outbox where state = "
                              "'pending' and attempts >= 1 and last_error "
                              "like '%space%'").fetchone()[0] >= 4
        finally:
            db.close()
    wait_for(deferred, what="deferred deliveries on a full disk")
    assert d.get("/healthz")[0] == 200
    assert "No space left on device" in d.logtext()
    filler.unlink()
    new = maildir / "new"
    wait_for(lambda: len(list(new.iterdir())) >= 4, timeout=60,
             what="deliveries once there is room")
    d.stop()
    assert len(list(new.iterdir())) == 4
    assert not list((maildir / "tmp").iterdir())  # no half-written file left
