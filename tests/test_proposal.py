"""Proposals (a report detected in the secretariat's mailbox, not yet
confirmed) and bounces as the secretariat sees them, against a real Dovecot
(IMAP APPEND as a mail client would) and a real aiosmtpd: the state
`proposed` in cutoffctl status, /status.json, /status.csv and on the page;
confirm through the page (a session and its CSRF token) and through
cutoffctl; reject; the head's escalation held while a proposal is open and
sent after a reject; a bounced address named in the secretariat's next
digest."""
import json
import re
from email.header import Header
from pathlib import Path

from conftest import ADMIN_TOKEN, ctl, make_config
from test_imap import (MAIL, add_imap, dovecot, fill, imap_section,  # noqa: F401
                       store)
from test_notices import smtp, smtp_mail, wait_for  # noqa: F401 (fixture)
from test_page import post_form

OCC = "q1/2024-03-13"

# due Wednesday 13/03/2024; the head on Thursday, the secretariat's digest
# on Friday
POLICY = """
[policy tight]
at       = 08:00
remind   = -2d -1d 0d
escalate = +1d head, +2d secretariat

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
period = 12-15 .. 03-13
policy = tight
units  = *
"""


def body_of(msg):
    part = msg.get_body(("plain",)) if hasattr(msg, "get_body") else None
    part = part or msg
    return part.get_payload(decode=True).decode("utf-8")


def mails_to(sink, addr):
    with sink.lock:
        return [m for r, m in sink.messages if addr in r]


def reply_to(reminder, sender, mid, name="Phòng Tư pháp"):
    """A unit's answer to its reminder, with its report named."""
    subj = Header("Re: " + reminder["Subject"], "utf-8").encode()
    frm = Header(name, "utf-8").encode()
    return (f"From: {frm} <{sender}>\r\nTo: thuongtruc@example.vn\r\n"
            f"Subject: {subj}\r\n"
            "Date: Mon, 11 Mar 2024 08:00:00 +0700\r\n"
            f"Message-ID: {mid}\r\n"
            f"In-Reply-To: {reminder['Message-ID']}\r\n"
            f"References: {reminder['Message-ID']}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8"
            "\r\n\r\nG\xc3\xbdi b\xc3\xa1o c\xc3\xa1o qu\xc3\xbd I.\r\n"
            ).encode("latin-1")


def state_of(conf, unit, now="2024-03-12T09:00"):
    r = ctl(conf, "status", OCC, now=now)
    assert r.returncode == 0, r.stderr
    for ln in r.stdout.splitlines():
        f = ln.split("\t")
        if f and f[0] == unit:
            return f[1]
    raise AssertionError(r.stdout)


def start(daemon_factory, tmp_path, port, dovecot, sink, speed):
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=POLICY)
    add_imap(conf, imap_section(
        tmp_path, f"imaps://127.0.0.1:{dovecot.imaps_port}/INBOX",
        mode="propose"))
    d = daemon_factory(conf, port, now="2024-03-11T07:59:00",
                       speed=speed).start()
    return conf, d


def test_proposed_everywhere_confirm_page_and_cli_reject(
        daemon_factory, tmp_path, port, dovecot, smtp):
    sink = smtp()
    # slow enough that nothing but the -2d reminders goes meanwhile
    conf, d = start(daemon_factory, tmp_path, port, dovecot, sink, 60)
    units = {"tu-phap": "tuphap@example.vn", "mttq": "mttq@example.vn",
             "ld-tbxh": "ldtbxh@example.vn"}
    rem = {u: wait_for(lambda a=a: (mails_to(sink, a) or [None])[0],
                       what=f"the -2d reminder to {u}")
           for u, a in units.items()}
    for u, a in units.items():
        dovecot.append(reply_to(rem[u], a, f"<reply-{u}@example.vn>"))

    def proposed():
        st, _, body = d.get("/status.json")
        j = json.loads(body)
        occ = [o for o in j["occurrences"] if o["id"] == OCC][0]
        got = {x["unit"]: x for x in occ["units"]}
        return got if all(got[u]["state"] == "proposed"
                          for u in units) else None
    got = wait_for(proposed, timeout=30,
                   what="three proposals:\n" + d.logtext())
    assert got["tu-phap"].get("proposed_by") == "imap", got
    assert got["p-tan-loi"]["state"] != "proposed"
    # never a submission
    db = store(conf)
    assert db.execute("SELECT count(*) FROM submission").fetchone()[0] == 0
    db.close()
    assert state_of(conf, "tu-phap") == "proposed"
    st, _, body = d.get("/status.csv")
    rows = [ln.split(",") for ln in body.decode().splitlines()]
    assert any("tu-phap" in r and "proposed" in r for r in rows), body

    # the page: the proposal with its evidence, and (logged in) its buttons
    st, hdr, _ = post_form(d, "/login", {"token": ADMIN_TOKEN})
    assert st == 303
    cookie = hdr["Set-Cookie"].split(";")[0]
    page = d.get("/", headers={"Cookie": cookie})[2].decode()
    assert "Đề xuất — chờ xác nhận" in page
    assert "reply-tu-phap@example.vn" in page     # the Message-ID
    assert "Re: " in page                          # the subject
    assert 'action="/proposal"' in page and 'value="confirm"' in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    form = {"occurrence": OCC, "unit": "tu-phap", "do": "confirm"}
    st, _, _ = post_form(d, "/proposal", form)             # no session
    assert st in (401, 403)
    st, _, _ = post_form(d, "/proposal", form, cookie)     # no CSRF
    assert st in (400, 403)
    assert state_of(conf, "tu-phap") == "proposed"
    st, _, _ = post_form(d, "/proposal", dict(form, csrf=csrf), cookie)
    assert st == 303
    assert state_of(conf, "tu-phap") == "submitted"

    # cutoffctl: confirm one, reject the other
    r = ctl(conf, "confirm", "mttq", OCC, now="2024-03-11T12:00")
    assert r.returncode == 0 and "source imap" in r.stdout, r
    r = ctl(conf, "reject", "ld-tbxh", OCC, "--note", "không phải báo cáo",
            now="2024-03-11T12:00")
    assert r.returncode == 0, r
    r = ctl(conf, "reject", "ld-tbxh", OCC, now="2024-03-11T12:00")
    assert r.returncode != 0 and "no open proposal" in r.stderr
    r = ctl(conf, "confirm", "p-tan-loi", OCC, now="2024-03-11T12:00")
    assert r.returncode != 0
    assert state_of(conf, "mttq") == "submitted"
    assert state_of(conf, "ld-tbxh") == "not-due"

    db = store(conf)
    subs = dict(db.execute("SELECT unit, source FROM submission"
                           " WHERE occurrence = ?", (OCC,)).fetchall())
    at = db.execute("SELECT at FROM submission WHERE unit = 'tu-phap'"
                    ).fetchone()[0]
    db.close()
    assert subs == {"tu-phap": "imap", "mttq": "imap"}   # the source kept
    assert at == 1710118800      # the mail's Date, 11/03/2024 08:00 +07
    hist = ctl(conf, "history", "--occurrence", OCC,
               now="2024-03-11T12:00").stdout
    conf_lines = [ln for ln in hist.splitlines() if "confirmed" in ln]
    assert len(conf_lines) == 2, hist
    assert any("tu-phap" in ln and "imap" in ln for ln in conf_lines), hist
    assert any("rejected" in ln and "ld-tbxh" in ln for ln in
               hist.splitlines()), hist
    # the page after: no proposal left to confirm
    page = d.get("/", headers={"Cookie": cookie})[2].decode()
    assert "Đề xuất — chờ xác nhận" not in page


def test_head_held_while_proposed_bounce_in_digest_released_by_reject(
        daemon_factory, tmp_path, port, dovecot, smtp):
    sink = smtp()
    # two simulated hours a second: Monday 08:00 to Friday 08:00 in 48 s
    conf, d = start(daemon_factory, tmp_path, port, dovecot, sink, 7200)
    rem = wait_for(lambda: (mails_to(sink, "tuphap@example.vn") or [None])[0],
                   what="the -2d reminder to tu-phap")
    wait_for(lambda: mails_to(sink, "mttq@example.vn"),
             what="the -2d reminder to mttq")
    db = store(conf)
    mids = {(o, u): m for o, u, m in db.execute(
        "SELECT occurrence, unit, message_id FROM outbox WHERE audience ="
        " 'unit' AND channel = 'email' AND state = 'sent'")}
    db.close()
    dovecot.append(reply_to(rem, "tuphap@example.vn", "<r1@tuphap.example>"))
    # the postfix report of mttq's address, for its first reminder
    dovecot.append(fill((MAIL / "06-dsn-postfix.eml").read_bytes(), mids))
    wait_for(lambda: state_of(conf, "tu-phap") == "proposed", timeout=20,
             what="the proposal:\n" + d.logtext())

    digest = wait_for(
        lambda: (mails_to(sink, "thuongtruc@example.vn") or [None])[0],
        timeout=90, what="Friday's digest to the secretariat")
    text = body_of(digest)
    # the bounce: the unit's address and the server's reason
    line = [ln for ln in text.splitlines()
            if "Địa chỉ thư của đơn vị không nhận được thư" in ln]
    assert len(line) == 1, text
    assert "mttq@example.vn" in line[0] and "5.1.1" in line[0] and \
        "User unknown" in line[0] and "Mặt trận" in line[0], line
    # Thursday's head escalations went to the others, not to tu-phap's
    assert mails_to(sink, "chutich.mttq@example.vn")
    assert mails_to(sink, "truongphong.ldtbxh@example.vn")
    assert not mails_to(sink, "truongphong.tuphap@example.vn")
    # the unit itself is still reminded (-1d, 0d)
    assert len(mails_to(sink, "tuphap@example.vn")) == 3
    db = store(conf)
    held = db.execute("SELECT state, next_try FROM outbox WHERE unit ="
                      " 'tu-phap' AND audience = 'head'").fetchall()
    db.close()
    assert held and all(s == "pending" and t > 10**11 for s, t in held), held

    # the page's failure summary reads it as a bounce
    page = d.get("/")[2].decode()
    assert "Địa chỉ thư của đơn vị không nhận được thư" in page, page
    assert "mttq@example.vn" in page

    r = ctl(conf, "reject", "tu-phap", OCC, now="2024-03-15T09:00")
    assert r.returncode == 0, r
    head = wait_for(lambda: mails_to(sink, "truongphong.tuphap@example.vn"),
                    timeout=30, what="the head's escalation after the "
                    "reject:\n" + d.logtext())
    assert len(head) == 1
    assert "released" in d.logtext()


def test_proposal_pauses_config(tmp_path, port):
    conf = make_config(tmp_path, port, cycles=POLICY.replace(
        "remind   = -2d -1d 0d", "remind   = -2d -1d 0d\n"
        "proposal_pauses = sometimes"))
    r = ctl(conf, "check")
    assert r.returncode == 1
    assert "expected head or none" in r.stderr and "cutoffd.conf:" in \
        r.stderr, r.stderr
    conf.write_text(conf.read_text().replace("= sometimes", "= none"))
    r = ctl(conf, "check")
    assert r.returncode == 0, r.stderr
