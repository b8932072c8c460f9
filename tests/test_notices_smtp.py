"""SMTP and webhook hardening against real servers (aiosmtpd, an HTTP
receiver), and the log lines an operator acts on: no AUTH in clear off
loopback, one refused address does not cost the others their mail,
Retry-After is honoured, sends/deferrals/failures are logged with the
Message-ID, the server's reply and the next try."""
import json
import re
import sqlite3
import threading
import time
import email
import email.policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import subprocess

from conftest import CUTOFFD, ctl, free_port, make_config

BEFORE = "2024-03-06T07:59:59"   # the -7d reminders go out one second later

TWO_ADDRESSES = """
[unit tu-phap]
name   = Phòng Tư pháp
email  = tuphap@example.vn, vanthu.tuphap@example.vn
head   = truongphong.tuphap@example.vn
groups = phong-ban
"""


class Sink:
    """Accepts mail; refuses the RCPTs named in `refuse` with their reply;
    records AUTH attempts."""

    def __init__(self, refuse=None):
        self.messages, self.logins = [], []
        self.refuse = refuse or {}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content,
                                       policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 2.0.0 Ok: queued as 4XyZ12"

    def auth(self, server, session, envelope, mechanism, data):
        self.logins.append(data.login.decode())
        return AuthResult(success=True)


def start_sink(sink, auth=False):
    port = free_port()
    kw = {}
    if auth:
        # AUTH offered without STARTTLS: what a careless server (or a
        # middlebox stripping STARTTLS) looks like
        kw = dict(authenticator=sink.auth, auth_require_tls=False)
    c = Controller(sink, hostname="127.0.0.1", port=port, **kw)
    c.start()
    sink.port, sink.controller = port, c
    return sink


def smtp_mail(url, extra=""):
    return (f"transport = smtp\nurl = {url}\n"
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


def rows(tmp_path, sql, *args):
    db = sqlite3.connect(tmp_path / "state.db", timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def state(tmp_path):
    r = rows(tmp_path, "select state from outbox")
    return r[0][0] if r else None


def fresh_state(tmp_path):
    for f in tmp_path.glob("state.db*"):
        f.unlink()


# ------------------------------------------------------------ plaintext AUTH

def test_no_password_in_clear_off_loopback(daemon_factory, tmp_path, port):
    """`starttls = try` (the default) with `user` set: a server that offers
    AUTH but no STARTTLS never sees the password, unless the server is a
    loopback address written as such or allow_plaintext_auth = yes.  Tests
    may only reach loopback, so the server is named `localhost`: a name is
    never taken for loopback (what it resolves to is not in the file), so
    it stands for any remote server here."""
    sink = start_sink(Sink(), auth=True)
    try:
        (tmp_path / "smtp.pass").write_text("mật-khẩu-1\n")
        creds = "user = vanthu\npassword_file = smtp.pass\n"
        remote = smtp_mail(f"smtp://localhost:{sink.port}", creds)
        conf = make_config(tmp_path, port, mail=remote)
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: rows(tmp_path, "select count(*) from outbox where "
                              "attempts >= 1")[0][0] >= 4,
                 what="attempts refused before AUTH")
        d.stop()
        assert sink.logins == [] and sink.messages == []
        errs = [r[0] for r in rows(tmp_path, "select last_error from outbox")]
        assert errs and all("STARTTLS" in e or "TLS" in e for e in errs), errs
        assert "STARTTLS is required before AUTH" in d.logtext()

        # starttls = no would send it in clear: a configuration error
        bad = make_config(tmp_path, port, mail=remote + "starttls = no\n")
        r = subprocess.run([str(CUTOFFD), "-c", str(bad), "--check"],
                           capture_output=True, text=True)
        assert r.returncode != 0
        assert re.search(r"cutoffd\.conf:\d+: starttls = no with user set",
                         r.stderr + r.stdout), r.stderr

        # the admin's explicit yes: AUTH in clear, mail delivered
        fresh_state(tmp_path)
        conf = make_config(tmp_path, port,
                           mail=remote + "allow_plaintext_auth = yes\n")
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: len(sink.messages) >= 4, what="mail after AUTH")
        d.stop()
        assert sink.logins and set(sink.logins) == {"vanthu"}

        # a loopback literal is exempt: nothing on the wire to sniff
        sink.logins.clear()
        sink.messages.clear()
        fresh_state(tmp_path)
        conf = make_config(tmp_path, port, mail=smtp_mail(
            f"smtp://127.0.0.1:{sink.port}", creds))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: len(sink.messages) >= 4, what="mail on loopback")
        d.stop()
        assert set(sink.logins) == {"vanthu"}
    finally:
        sink.controller.stop()


# ------------------------------------------------------- refused recipients

def test_one_refused_address_others_get_the_mail(daemon_factory, tmp_path,
                                                 port):
    refusal = ("550 5.1.1 <vanthu.tuphap@example.vn>: Recipient address "
               "rejected: User unknown in virtual mailbox table")
    sink = start_sink(Sink(refuse={"vanthu.tuphap@example.vn": refusal}))
    try:
        conf = make_config(tmp_path, port, units=TWO_ADDRESSES,
                           mail=smtp_mail(f"smtp://127.0.0.1:{sink.port}",
                                          "starttls = no\n"))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: sink.messages, what="the reminder")
        wait_for(lambda: rows(tmp_path, "select count(*) from outbox_refused"
                              )[0][0] >= 1, what="the refusal recorded")
        # wait until the outcome is written
        wait_for(lambda: state(tmp_path) == "sent", what="the notice marked sent")
        st, _, body = d.get("/status.json")
        pst, _, page = d.get("/")
        log = d.logtext()
        d.stop()
        rcpts, msg = sink.messages[0]
        assert rcpts == ["tuphap@example.vn"]
        # the header still names both: the refusal is the envelope's
        assert "vanthu.tuphap@example.vn" in str(msg["To"])
        (addr, reply), = rows(tmp_path, "select address, reply from "
                              "outbox_refused")
        assert addr == "vanthu.tuphap@example.vn"
        assert reply == refusal
        assert st == 200 and pst == 200
        page = page.decode()
        assert "Địa chỉ thư bị máy chủ từ chối" in page
        assert "vanthu.tuphap@example.vn" in page and "User unknown" in page
        refused = json.loads(body)["refused"]
        assert [(r["unit"], r["address"], r["reply"]) for r in refused] == \
            [("tu-phap", "vanthu.tuphap@example.vn", refusal)]
        r = ctl(conf, "status", now="2024-03-06T09:00")
        assert r.returncode == 0, r.stderr
        line = [l for l in r.stdout.splitlines() if l.startswith("refused")]
        assert line and "vanthu.tuphap@example.vn" in line[0] and \
            "User unknown" in line[0], r.stdout
        assert re.search(r"notice address refused: q1/2024-03-13 tu-phap "
                         r"remind-7d unit email to vanthu\.tuphap@example\.vn:"
                         r" 550 5\.1\.1", log), log
    finally:
        sink.controller.stop()


def test_every_address_refused_fails_with_replies(daemon_factory, tmp_path,
                                                  port):
    sink = start_sink(Sink(refuse={
        "tuphap@example.vn": "550 5.1.1 no such user",
        "vanthu.tuphap@example.vn": "550 5.7.1 relaying denied"}))
    try:
        conf = make_config(tmp_path, port, units=TWO_ADDRESSES,
                           mail=smtp_mail(f"smtp://127.0.0.1:{sink.port}",
                                          "starttls = no\n"))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: state(tmp_path) == "failed", what="the notice failed")
        log = d.logtext()
        d.stop()
        assert sink.messages == []
        got = dict(rows(tmp_path, "select address, reply from outbox_refused"))
        assert got == {"tuphap@example.vn": "550 5.1.1 no such user",
                       "vanthu.tuphap@example.vn": "550 5.7.1 relaying denied"}
        (err,), = rows(tmp_path, "select last_error from outbox")
        assert "550 5.7.1 relaying denied" in err
        assert re.search(r"notice failed \(attempt 1\): q1/2024-03-13 "
                         r"tu-phap remind-7d unit email .*<[^>]+>: .*550", log)
    finally:
        sink.controller.stop()


# ----------------------------------------------------------------- the logs

def test_log_lines_an_operator_can_act_on(daemon_factory, tmp_path, port):
    tries = []

    class Flaky(Sink):
        async def handle_DATA(self, server, session, envelope):
            tries.append(1)
            if len(tries) == 1:
                # untrusted text: a control character must come out escaped
                return "451 4.3.0 busy\x1b[31m try later"
            return await super().handle_DATA(server, session, envelope)

    sink = start_sink(Flaky())
    try:
        one_unit = TWO_ADDRESSES.replace(", vanthu.tuphap@example.vn", "")
        conf = make_config(tmp_path, port, units=one_unit,
                           mail=smtp_mail(f"smtp://127.0.0.1:{sink.port}",
                                          "starttls = no\n"))
        # 600x: the 10-minute backoff is one real second
        d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
        wait_for(lambda: sink.messages, what="the retried reminder")
        wait_for(lambda: "notice sent:" in d.logtext(), what="the log line")
        log = d.logtext()
        d.stop()
        (mid,), = rows(tmp_path, "select message_id from outbox")
        m = re.search(r"notice deferred \(attempt 1, next try at "
                      r"(\d{4}-\d\d-\d\dT\d\d:\d\d)\+07:00\): q1/2024-03-13 "
                      r"tu-phap remind-7d unit email to tuphap@example\.vn "
                      + re.escape(mid) + r": (.*)", log)
        assert m, log
        assert m.group(1) >= "2024-03-06T08:09"   # 10 minutes, -10 % jitter
        assert "\x1b" not in log and "\\x1b" in m.group(2)
        assert "451 4.3.0 busy" in m.group(2)
        assert re.search(r"notice sent: q1/2024-03-13 tu-phap remind-7d unit "
                         r"email to tuphap@example\.vn " + re.escape(mid) +
                         r": 250 2\.0\.0 Ok: queued as 4XyZ12", log), log
    finally:
        sink.controller.stop()


# -------------------------------------------------------------- Retry-After

class Receiver(BaseHTTPRequestHandler):
    hits = []
    answer = []  # (status, retry-after header or None), popped per request

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.hits.append(time.monotonic())
        status, ra = Receiver.answer.pop(0) if Receiver.answer else (200, None)
        self.send_response(status)
        if ra is not None:
            self.send_header("Retry-After", ra)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_webhook_retry_after(daemon_factory, tmp_path, port):
    Receiver.hits, Receiver.answer = [], [(429, "7200"), (503, "120")]
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{srv.server_port}/hook"
        units = TWO_ADDRESSES.replace(
            "groups = phong-ban", f"groups = phong-ban\nwebhook = {hook}")
        mail = (f"transport = maildir\nmaildir = {tmp_path}/mail\n"
                "retry_min = 1m\nretry_max = 6h\ngive_up = 3d\n")
        conf = make_config(tmp_path, port, units=units, mail=mail)
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: Receiver.hits, what="the first POST")

        def deferred():
            r = rows(tmp_path, "select attempts, next_try, send_at, "
                     "last_error from outbox where channel = 'webhook'")
            return r[0] if r and r[0][0] >= 1 else None
        attempts, next_try, send_at, err = wait_for(deferred,
                                                    what="the deferral")
        log = d.logtext()
        d.stop()
        # the backoff alone would say one minute; the server said two hours
        assert next_try - send_at >= 7200, (next_try - send_at, err)
        assert next_try - send_at < 7200 + 120
        assert "429" in err
        assert len(Receiver.hits) == 1
        assert re.search(r"notice deferred \(attempt 1, next try at "
                         r"2024-03-06T10:00\+07:00\): .* webhook to "
                         r"http://127\.0\.0\.1:\d+/\.\.\.", log), log

        # the second answer (503, 120 s) is shorter than the backoff would
        # be later on: the next try is the larger of the two; then 200
        d = daemon_factory(conf, port, now="2024-03-06T10:00:30").start()
        wait_for(lambda: len(Receiver.hits) >= 2, what="the second POST")
        attempts, nt, _, _ = wait_for(
            lambda: deferred() if deferred()[0] >= 2 else None,
            what="the second deferral")
        d.stop()
        assert attempts == 2 and nt >= send_at + 7230 + 120
    finally:
        srv.shutdown()


# ------------------------------------------------------------------ threads

def test_mails_to_a_unit_form_one_thread(daemon_factory, tmp_path, port):
    """The contract's "Notices": the first mail to a unit about an
    occurrence has a stable Message-ID, the later ones answer it
    (In-Reply-To, References); Reply-To is the secretariat's address."""
    sink = start_sink(Sink())
    try:
        one_unit = TWO_ADDRESSES.replace(", vanthu.tuphap@example.vn", "")
        conf = make_config(tmp_path, port, units=one_unit,
                           mail=smtp_mail(f"smtp://127.0.0.1:{sink.port}",
                                          "starttls = no\n"))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: len(sink.messages) >= 1, what="the -7d reminder")
        d.stop()
        # the -1d reminder (12/03), two steps later
        d = daemon_factory(conf, port, now="2024-03-12T07:59:58").start()
        wait_for(lambda: len(sink.messages) >= 3, timeout=40,
                 what="later reminders")
        d.stop()
        to_unit = [m for r, m in sink.messages if r == ["tuphap@example.vn"]]
        first, later = to_unit[0], to_unit[1:]
        (mid,), = rows(tmp_path, "select message_id from outbox where "
                       "step = 'remind-7d' and audience = 'unit'")
        assert first["Message-ID"] == mid
        assert first["In-Reply-To"] is None and first["References"] is None
        assert later
        for m in later:
            assert m["Message-ID"] != mid
            assert m["In-Reply-To"] == mid
            assert m["References"] == mid
        for m in to_unit:
            assert [a.addr_spec for a in m["Reply-To"].addresses] == \
                ["thuongtruc@example.vn"]
    finally:
        sink.controller.stop()


def test_one_step_to_unit_and_head_is_one_thread(daemon_factory, tmp_path,
                                                 port):
    """A step for both the unit and its head sends two mails at once: the
    one that goes second answers the first, though neither was marked
    sent when it was built."""
    sink = start_sink(Sink())
    try:
        one_unit = TWO_ADDRESSES.replace(", vanthu.tuphap@example.vn", "")
        cycles = """
[policy both]
at     = 08:00
remind = -7d unit head

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
period = 12-15 .. 03-13
policy = both
units  = *
"""
        conf = make_config(tmp_path, port, units=one_unit, cycles=cycles,
                           mail=smtp_mail(f"smtp://127.0.0.1:{sink.port}",
                                          "starttls = no\n"))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: len(sink.messages) >= 2, what="both mails")
        d.stop()
        msgs = [m for _, m in sink.messages]
        roots = [m for m in msgs if m["In-Reply-To"] is None]
        assert len(roots) == 1, [m["In-Reply-To"] for m in msgs]
        other, = [m for m in msgs if m["In-Reply-To"] is not None]
        assert other["In-Reply-To"] == roots[0]["Message-ID"]
        assert other["References"] == roots[0]["Message-ID"]
    finally:
        sink.controller.stop()
