"""The secretariat's mailbox ([imap]) against a real Dovecot on loopback:
replies, out-of-office answers and delivery reports placed with IMAP
APPEND (Python's imaplib, as a mail client would), the daemon polling
read-only; a corpus of messages under tests/mail/ with expected outcomes
(precision and recall printed); a reply that stops the chase at a real
aiosmtpd; a dead and a silent server that stall nothing."""
import imaplib
from email.header import Header
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ctl, free_port, http, make_config, self_signed
from test_notices import smtp, smtp_mail, wait_for  # noqa: F401 (fixture)

MAIL = Path(__file__).resolve().parent / "mail"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "thuongtruc", "imap-test-password-7f3a"


class Dovecot:
    """A Dovecot of its own: configuration, base_dir, passwd-file user,
    Maildir and self-signed certificate in a temporary directory."""

    def __init__(self):
        # short: Dovecot's unix sockets live under base_dir
        self.dir = Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))
        self.imap_port, self.imaps_port = free_port(), free_port()
        d = self.dir
        os.chmod(d, 0o755)        # the mail user (nobody) walks through it
        (d / "base").mkdir()
        (d / "mail").mkdir()
        os.chmod(d / "mail", 0o777)
        self_signed(d, "localhost")
        # uid/gid 65534 (nobody): Dovecot does not serve mail as root
        (d / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:65534:65534::{d}/mail/{USER}\n")
        (d / "dovecot.conf").write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {d}/base
state_dir = {d}/base/state
instance_name = cutoffd-test-{self.imaps_port}
log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
auth_mechanisms = plain login
disable_plaintext_auth = yes
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c",
                                      str(d / "dovecot.conf")],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        wait_for(self._listening, timeout=20, what="dovecot listening")

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError("dovecot exited: " +
                                 self.proc.stdout.read().decode())
        try:
            socket.create_connection(("127.0.0.1", self.imaps_port), 0.5) \
                .close()
            return True
        except OSError:
            return False

    def client(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ctx)
        c.login(USER, PASSWORD)
        return c

    def append(self, data, mailbox="INBOX"):
        c = self.client()
        typ, _ = c.append(mailbox, None, None, data)
        c.logout()
        assert typ == "OK"

    def flags(self, mailbox="INBOX"):
        """Every message's flags, read-only (EXAMINE)."""
        c = self.client()
        c.select(mailbox, readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
        c.logout()
        return [x for x in data if x]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def dovecot():
    d = Dovecot()
    yield d
    d.stop()


def imap_section(tmp_path, url, mode="record", extra=""):
    pw = Path(tmp_path) / "imap.password"
    pw.write_text(PASSWORD + "\n")
    return (f"\n[imap]\nurl = {url}\ntls_verify = no\nuser = {USER}\n"
            f"password_file = {pw}\npoll = 2s\nmode = {mode}\n{extra}")


def add_imap(conf, text):
    conf.write_text(conf.read_text() + text)


def store(conf):
    return sqlite3.connect(str(Path(conf).parent / "state.db"), timeout=10)


def first_mids(conf):
    """(occurrence, unit) -> Message-ID of the first email sent to it."""
    db = store(conf)
    rows = db.execute("SELECT occurrence, unit, message_id FROM outbox"
                      " WHERE channel = 'email' AND audience = 'unit'"
                      " AND state = 'sent' ORDER BY id").fetchall()
    db.close()
    out = {}
    for occ, unit, mid in rows:
        out.setdefault((occ, unit), mid)
    return out


def corpus():
    rows = []
    for line in (MAIL / "manifest.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, outcome, occ, unit = line.split()
        rows.append((name, outcome, None if occ == "-" else occ,
                     None if unit == "-" else unit))
    return rows


def fill(data, mids):
    text = data.decode("utf-8")
    while "%%MID " in text:
        i = text.index("%%MID ")
        j = text.index("%%", i + 2)
        occ, unit = text[i + 6:j].split()
        text = text[:i] + mids[(occ, unit)] + text[j + 2:]
    return text.encode("utf-8")


def seen(conf):
    db = store(conf)
    rows = db.execute("SELECT message_id, outcome, occurrence, unit"
                      " FROM imap_seen").fetchall()
    db.close()
    return {r[0]: r[1:] for r in rows}


def message_id(data):
    for line in data.decode("utf-8").split("\r\n"):
        if line.lower().startswith("message-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Message-ID")


# 07:59:30 on Wednesday 06/03/2024: q1/2024-03-13's first reminder (-7d)
# goes out at 08:00, three simulated seconds later.
BEFORE = "2024-03-06T07:59:30"


@pytest.mark.parametrize("mode", ["record", "propose"])
def test_corpus_outcomes_precision_recall(daemon_factory, tmp_path, port,
                                          dovecot, mode):
    c = dovecot.client()
    assert c.create("Reports")[0] == "OK"
    c.logout()
    conf = make_config(tmp_path, port)
    add_imap(conf, imap_section(
        tmp_path, f"imaps://127.0.0.1:{dovecot.imaps_port}/Reports",
        mode=mode))
    d = daemon_factory(conf, port, now=BEFORE, speed=10).start()
    units = ["ld-tbxh", "mttq", "p-tan-loi", "tu-phap"]
    mids = wait_for(lambda: (lambda m: m if all(
        ("q1/2024-03-13", u) in m for u in units) else None)(first_mids(conf)),
        what="the first reminders sent")
    rows = corpus()
    if mode == "propose":      # nothing is recorded, all is proposed
        rows = [(n, "proposed" if o == "recorded" else o, oc, u)
                for n, o, oc, u in rows]
    sent = {}
    for name, *_ in rows:
        data = fill((MAIL / name).read_bytes(), mids)
        sent[name] = message_id(data)
        dovecot.append(data, "Reports")
    wait_for(lambda: len(seen(conf)) >= len(rows), timeout=60,
             what="every message read:\n" + d.logtext())
    got = seen(conf)

    # precision and recall of detected reports (recorded or proposed) and
    # of bounces, against the manifest
    tp = fp = fn = 0
    btp = bfp = bfn = 0
    wrong = []
    for name, outcome, occ, unit in rows:
        g_outcome, g_occ, g_unit = got[sent[name]]
        det = g_outcome in ("recorded", "proposed")
        exp = outcome in ("recorded", "proposed")
        if det and exp and (g_occ, g_unit) == (occ, unit):
            tp += 1
        else:
            fp += det
            fn += exp
        bdet, bexp = g_outcome == "bounced", outcome == "bounced"
        if bdet and bexp and (g_occ, g_unit) == (occ, unit):
            btp += 1
        else:
            bfp += bdet
            bfn += bexp
        want = outcome if outcome != "ignored" else None
        have = g_outcome if g_outcome in ("recorded", "proposed",
                                          "bounced") else None
        if want != have or (want and (g_occ, g_unit) != (occ, unit)):
            wrong.append((name, outcome, occ, unit, g_outcome, g_occ, g_unit))
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    bprec = btp / (btp + bfp) if btp + bfp else 1.0
    brec = btp / (btp + bfn) if btp + bfn else 1.0
    print(f"\nimap corpus ({len(rows)} messages): reports precision "
          f"{prec:.2f} recall {rec:.2f} ({tp} right, {fp} false, {fn} "
          f"missed); bounces precision {bprec:.2f} recall {brec:.2f}")
    assert not wrong, wrong

    # what the ledger says: the reply recorded with source imap, its Date
    # as the time received; the proposals as history events; nothing for
    # the out-of-office senders
    r = ctl(conf, "history", now="2024-03-08T12:00")
    assert r.returncode == 0, r.stderr
    hist = r.stdout
    lines = [ln for ln in hist.splitlines() if "imap" in ln]
    assert any("tu-phap" in ln and ("received" if mode == "record" else
                                     "proposed") in ln
               for ln in lines), hist
    assert any("ld-tbxh" in ln and "proposed" in ln and "h1/2024-06-13" in ln
               for ln in lines), hist
    assert any("ld-tbxh" in ln and "proposed" in ln and "q1/2024-03-13" in ln
               for ln in lines), hist
    assert not any("mttq" in ln for ln in lines), hist
    assert [ln.split("\t")[1] for ln in lines if "p-tan-loi" in ln] == \
        ["q1/2023-03-13"], hist
    db = store(conf)
    row = db.execute("SELECT at, source FROM submission WHERE occurrence"
                     " = 'q1/2024-03-13' AND unit = 'tu-phap'").fetchone()
    if mode == "propose":
        assert row is None
        row = db.execute("SELECT at, source FROM submission_event WHERE"
                         " action = 'proposed' AND unit = 'tu-phap'"
                         ).fetchone()
    at, src = row
    assert src == "imap"
    # its Date (Mon, 11 Mar 2024 09:13:58 +0700), or the daemon's clock
    # when that Date lies ahead of it (a sender's clock skew)
    assert 1709686800 <= at <= 1710123238
    bounces = db.execute("SELECT o.unit, b.address, b.status, b.diagnostic"
                         " FROM notice_bounce b JOIN outbox o ON o.id ="
                         " b.outbox_id ORDER BY o.unit").fetchall()
    db.close()
    assert [b[:3] for b in bounces] == [
        ("mttq", "mttq@example.vn", "5.1.1"),
        ("p-tan-loi", "bcd.tanloi@example.vn", "5.1.10")]
    assert "User unknown" in bounces[0][3]
    assert "RecipientNotFound" in bounces[1][3]
    st = ctl(conf, "status", "q1/2024-03-13", now="2024-03-08T12:00").stdout
    assert "bounced" in st and "mttq@example.vn" in st, st
    code, _, body = d.get("/metrics")
    assert code == 200
    text = body.decode()
    n_rec = sum(1 for r in rows if r[1] == "recorded")
    assert f'cutoffd_imap_messages_total{{outcome="recorded"}} {n_rec}' \
        in text, text
    assert 'cutoffd_imap_messages_total{outcome="bounced"} 2' in text
    assert "cutoffd_imap_last_poll_timestamp_seconds 17" in text
    import json
    code, _, body = d.get("/status.json")
    assert code == 200
    bj = json.loads(body)["bounced"]
    assert sorted((b["unit"], b["address"], b["status"]) for b in bj) == [
        ("mttq", "mttq@example.vn", "5.1.1"),
        ("p-tan-loi", "bcd.tanloi@example.vn", "5.1.10")], bj

    # read-only: no message got \Seen (or any flag)
    for f in dovecot.flags("Reports"):
        assert b"\\Seen" not in f and b"\\Deleted" not in f, f

    # across a restart and a new UIDVALIDITY (the folder made again, the
    # same messages in it): nothing is counted twice
    d.stop()
    db = store(conf)
    events = db.execute("SELECT count(*) FROM submission_event").fetchone()[0]
    db.close()
    c = dovecot.client()
    c.delete("Reports")
    c.create("Reports")
    c.logout()
    for name, *_ in rows:
        dovecot.append(fill((MAIL / name).read_bytes(), mids), "Reports")
    d = daemon_factory(conf, port, now="2024-03-08T12:00", speed=10).start()
    wait_for(lambda: "reading the mailbox again" in d.logtext(),
             what="the new UIDVALIDITY seen:\n" + d.logtext())
    wait_for(lambda: "uid %d " % len(rows) in d.logtext(), timeout=60,
             what="the last message read again")
    d.stop()
    db = store(conf)
    assert db.execute("SELECT count(*) FROM submission_event") \
        .fetchone()[0] == events
    assert db.execute("SELECT count(*) FROM imap_seen").fetchone()[0] == \
        len(rows)
    db.close()


POLICY = """
[policy tight]
at     = 08:00
remind = -2d -1d 0d

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
period = 12-15 .. 03-13
policy = tight
units  = *
"""


def test_reply_is_recorded_and_stops_the_chase(daemon_factory, tmp_path,
                                               port, dovecot, smtp):
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=POLICY)
    add_imap(conf, imap_section(
        tmp_path, f"imap://127.0.0.1:{dovecot.imap_port}/INBOX",
        extra="starttls = required\n"))
    # 2 simulated hours a second: the -1d reminder is 12 s after the -2d
    d = daemon_factory(conf, port, now="2024-03-11T07:59:00",
                       speed=7200).start()

    def first_to(addr):
        with sink.lock:
            for rcpts, msg in sink.messages:
                if addr in rcpts:
                    return msg
        return None
    reminder = wait_for(lambda: first_to("tuphap@example.vn"),
                        what="the -2d reminder to tu-phap")
    mid = reminder["Message-ID"]
    reply = (f"From: =?UTF-8?Q?Ph=C3=B2ng_T=C6=B0_ph=C3=A1p?= "
             f"<tuphap@example.vn>\r\nTo: thuongtruc@example.vn\r\n"
             f"Subject: {Header('Re: ' + reminder['Subject'], 'utf-8').encode()}"
             "\r\n"
             f"Date: Mon, 11 Mar 2024 10:00:00 +0700\r\n"
             f"Message-ID: <reply-1@tuphap.example.vn>\r\n"
             f"In-Reply-To: {mid}\r\nReferences: {mid}\r\n"
             "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8"
             "\r\n\r\nG\xc3\xbdi b\xc3\xa1o c\xc3\xa1o.\r\n").encode("latin-1")
    dovecot.append(reply)
    t0 = time.monotonic()

    def recorded():
        st, _, body = http("GET", d.base + "/status.json")
        return st == 200 and b'"imap"' in body
    wait_for(recorded, timeout=20, what="the reply recorded:\n" + d.logtext())
    print(f"\nreply recorded {time.monotonic() - t0:.2f} s after APPEND "
          "(poll = 2s)")
    # the next reminders (-1d, 0d) go to the others, never to tu-phap
    wait_for(lambda: sum("mttq@example.vn" in r for r, _ in sink.messages)
             >= 3, timeout=40, what="the 0d reminder to mttq")
    d.stop()
    to_tuphap = [m for r, m in sink.messages if "tuphap@example.vn" in r]
    assert len(to_tuphap) == 1, [m["Subject"] for m in to_tuphap]
    r = ctl(conf, "status", "q1/2024-03-13", now="2024-03-12T09:00")
    line = [ln for ln in r.stdout.splitlines() if "tu-phap" in ln][0]
    assert "submitted" in line, r.stdout
    # STARTTLS was required and done: Dovecot refuses LOGIN in clear
    for f in dovecot.flags():
        assert b"\\Seen" not in f


class Silent(threading.Thread):
    """A server that accepts connections and never says a word."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("kind", ["closed", "silent"])
def test_dead_or_silent_server_stalls_nothing(daemon_factory, tmp_path, port,
                                              kind):
    silent = None
    if kind == "silent":
        silent = Silent()
        silent.start()
        iport = silent.port
    else:
        iport = free_port()       # nothing listens there
    conf = make_config(tmp_path, port)
    add_imap(conf, imap_section(tmp_path,
                                f"imap://127.0.0.1:{iport}/INBOX",
                                extra="starttls = no\n"))
    d = daemon_factory(conf, port, now=BEFORE, speed=10).start()
    try:
        if kind == "closed":
            wait_for(lambda: "imap: imap://127.0.0.1:%d/" % iport
                     in d.logtext(), what="the failure logged")
        else:
            wait_for(lambda: silent.conns, what="a connection")
        worst = 0.0
        for _ in range(40):
            t = time.monotonic()
            st, _, body = d.get("/healthz")
            worst = max(worst, time.monotonic() - t)
            assert st == 200, body
            st, _, _ = d.get("/status.json")
            assert st == 200
            time.sleep(0.05)
        print(f"\n/healthz slowest of 40 with a {kind} IMAP server: "
              f"{worst * 1000:.1f} ms")
        if kind == "closed":
            # the mailbox's trouble is a detail after the store's "ok"
            wait_for(lambda: b"imap failing" in d.get("/healthz")[2],
                     what="/healthz naming the mailbox's trouble")
            assert d.get("/healthz")[2].startswith(b"ok\n")
        # the reminders still go out meanwhile
        wait_for(lambda: first_mids(conf), what="reminders sent")
    finally:
        d.stop()
        if silent:
            silent.close()


@pytest.mark.parametrize("section,msg", [
    ("url = imap://mail.example.vn/INBOX\nstarttls = no\n",
     "only for a server on loopback"),
    ("url = imaps://mail.example.vn/INBOX\npoll = 1s\n",
     "at least 2s"),
    ("url = imaps://mail.example.vn/INBOX\nmode = auto\n",
     "expected record or propose"),
    ("url = https://mail.example.vn/INBOX\n", "expected imaps://"),
    ("url = imaps://mail.example.vn/\n", "expected imaps://"),
    ("poll = 5m\n", "url is required"),
    ("url = imaps://mail.example.vn/INBOX\nuser = tt\n",
     "user needs password_file"),
])
def test_imap_config_errors(tmp_path, port, section, msg):
    conf = make_config(tmp_path, port)
    add_imap(conf, "\n[imap]\n" + section)
    r = ctl(conf, "check")
    assert r.returncode == 1
    assert msg in r.stderr, r.stderr
    assert "cutoffd.conf:" in r.stderr


def test_imap_config_accepted(tmp_path, port):
    conf = make_config(tmp_path, port)
    add_imap(conf, "\n[imap]\nurl = imap://127.0.0.1:1143/INBOX\n"
             "starttls = no\npoll = 2s\n")
    r = ctl(conf, "check")
    assert r.returncode == 0, r.stderr


def test_large_message_report_named_in_a_late_attachment(daemon_factory,
                                                         tmp_path, port,
                                                         dovecot):
    """A 2 MB mail: only its first 128 KiB are fetched, the name of the
    attachment after a big one comes from BODYSTRUCTURE; a line far over
    RFC 5322's limit does not wedge the mailbox."""
    import base64
    conf = make_config(tmp_path, port)
    add_imap(conf, imap_section(
        tmp_path, f"imaps://127.0.0.1:{dovecot.imaps_port}/INBOX",
        mode="propose"))
    big = base64.encodebytes(os.urandom(1500000)).replace(b"\n", b"\r\n")
    msg = (b"From: mttq@example.vn\r\nTo: thuongtruc@example.vn\r\n"
           b"Subject: =?UTF-8?Q?G=E1=BB=ADi_t=C3=A0i_li=E1=BB=87u?=\r\n"
           b"Date: Wed, 6 Mar 2024 09:00:00 +0700\r\n"
           b"Message-ID: <big-1@mttq.example.vn>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
           b"--zz\r\nContent-Type: text/plain\r\n\r\nxem tep\r\n"
           b"--zz\r\nContent-Type: image/jpeg\r\nContent-Disposition: "
           b"attachment; filename=anh.jpg\r\nContent-Transfer-Encoding: "
           b"base64\r\n\r\n" + big +
           b"--zz\r\nContent-Type: application/pdf\r\nContent-Disposition: "
           b"attachment;\r\n filename*=UTF-8''B%C3%A1o%20c%C3%A1o%20qu%C3%BD"
           b"%20I%202024.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"JVBERi0K\r\n--zz--\r\n")
    dovecot.append(b"From: x@y.vn\r\nSubject: long\r\nMessage-ID: <long@y>"
                   b"\r\n\r\n" + b"a" * 600000 + b"\r\n")
    dovecot.append(msg)
    d = daemon_factory(conf, port, now=BEFORE, speed=10).start()
    wait_for(lambda: len(seen(conf)) >= 2, timeout=30,
             what="both read:\n" + d.logtext())
    d.stop()
    got = seen(conf)
    assert got["<big-1@mttq.example.vn>"] == ("proposed", "q1/2024-03-13",
                                              "mttq"), got
    assert got["<long@y>"][0] == "unknown_sender"
    for f in dovecot.flags():
        assert b"\\Seen" not in f


def test_refusing_server_is_logged_and_retried(daemon_factory, tmp_path,
                                               port, dovecot):
    """A wrong password: the log says so (without the password), the
    daemon serves on, and the poll is tried again with a longer wait."""
    conf = make_config(tmp_path, port)
    add_imap(conf, imap_section(
        tmp_path, f"imaps://127.0.0.1:{dovecot.imaps_port}/INBOX"))
    (Path(tmp_path) / "imap.password").write_text("wrong-password\n")
    d = daemon_factory(conf, port, now=BEFORE, speed=10).start()
    wait_for(lambda: "imap: imaps://127.0.0.1:%d/" % dovecot.imaps_port
             in d.logtext(), what="the failure logged")
    st, _, _ = d.get("/healthz")
    assert st == 200
    d.stop()
    log = d.logtext()
    assert "wrong-password" not in log and PASSWORD not in log
    assert "next try in" in log
