"""The ledger through the real CLI, the real daemon and its HTTP side:
extended deadlines (plan re-armed, no burst, feeds, mails), nil returns,
the history with source and actor."""
import datetime as dt
import email
import email.policy
import getpass
import json
import os
import time

import icalendar
import pytest

from conftest import ADMIN_TOKEN, Daemon, ctl, http, make_config

OCC = "q1/2024-03-13"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": "application/json"}


def make_store(conf, port):
    """The state store, made as an installation makes it: by the daemon's
    first start (on 01/03/2024, so nothing here is before `since`)."""
    d = Daemon(conf, port, now="2024-03-01T00:00")
    d.start()
    assert d.stop() == 0, d.logtext()


@pytest.fixture
def conf(tmp_path, port):
    c = make_config(tmp_path, port)
    make_store(c, port)
    return c


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def plan_rows(conf, *args):
    r = ctl(conf, "plan", *args)
    assert r.returncode == 0, r.stderr
    return [l.split("\t") for l in r.stdout.splitlines()]


def feed_event(d, path, uid_part=OCC.replace("/", "-")):
    st, _, body = d.get(path)
    assert st == 200, body
    cal = icalendar.Calendar.from_ical(body)
    return next(e for e in cal.walk("VEVENT") if uid_part in str(e["UID"]))


def maildir_msgs(tmp_path):
    new = tmp_path / "mail" / "new"
    if not new.is_dir():
        return []
    return [email.message_from_bytes(f.read_bytes(),
                                     policy=email.policy.default)
            for f in sorted(new.iterdir())]


def me():
    return os.environ.get("SUDO_USER") if os.getuid() == 0 and \
        os.environ.get("SUDO_USER") else getpass.getuser()


# ------------------------------------------------------------ extensions

def test_extend_replans_cli(conf):
    """The plan follows the new date for everyone, or for one unit."""
    before = plan_rows(conf, "--from", "2024-03-01", "--to", "2024-03-31",
                       "--unit", "tu-phap")
    assert [OCC, "tu-phap", "remind-3d"] in [x[1:4] for x in before]
    r = ctl(conf, "extend", OCC, "2024-03-20", "--note", "Do mưa lũ")
    assert r.returncode == 0, r.stderr
    assert "20/03/2024" in r.stdout
    rows = plan_rows(conf, "--from", "2024-03-01", "--to", "2024-03-31")
    q1 = [x for x in rows if x[1] == OCC]
    # every reminder now counts from 20/03 (a Wednesday)
    rem = {(x[0], x[3].split("~")[0]) for x in q1
           if x[3].startswith("remind")}
    # (-3d is a Sunday: where it goes is the send-days rule's business)
    assert {("2024-03-13T08:00", "remind-7d"),
            ("2024-03-19T08:00", "remind-1d"),
            ("2024-03-20T08:00", "remind+0d")} <= rem
    assert all(x[3].endswith("~20240320") for x in q1)
    assert not any(x[0].startswith("2024-03-10") for x in q1)
    assert not any(x[0] == "2024-03-14T08:00" and x[3].startswith("escalate")
                   for x in q1), "no escalation the day after the old date"
    # one unit further still: only its own rows move
    r = ctl(conf, "extend", OCC, "2024-03-27", "--unit", "tu-phap")
    assert r.returncode == 0, r.stderr
    rows = plan_rows(conf, "--from", "2024-03-01", "--to", "2024-04-30")
    tp = [x for x in rows if x[1] == OCC and x[2] == "tu-phap"]
    other = [x for x in rows if x[1] == OCC and x[2] == "mttq"]
    assert any(x[0] == "2024-03-27T08:00" and x[3].startswith("remind+0d")
               for x in tp)
    assert not any(x[3].endswith("~20240320") for x in tp)
    assert any(x[0] == "2024-03-20T08:00" and x[3].startswith("remind+0d")
               for x in other)
    # each (unit, step) once: the unit's own extension replaces the other
    keys = [(x[0], x[2], x[3], x[4], x[5]) for x in rows if x[1] == OCC]
    assert len(keys) == len(set(keys))
    # cancelling the unit's own brings back the occurrence-wide one
    r = ctl(conf, "extend", OCC, "--cancel", "--unit", "tu-phap")
    assert r.returncode == 0, r.stderr
    rows = plan_rows(conf, "--from", "2024-03-01", "--to", "2024-04-30",
                     "--unit", "tu-phap")
    assert any(x[0] == "2024-03-20T08:00" and x[3].startswith("remind+0d")
               for x in rows if x[1] == OCC)
    r = ctl(conf, "extend", OCC, "--cancel")
    assert r.returncode == 0, r.stderr
    assert plan_rows(conf, "--from", "2024-03-01", "--to", "2024-03-31",
                     "--unit", "tu-phap") == before


@pytest.mark.parametrize("args,msg", [
    ([OCC, "2024-03-01"], "before the planned due date"),
    ([OCC, "2026-03-01"], "more than a year"),
    ([OCC, "20/03/2024"], "expected YYYY-MM-DD"),
    ([OCC, "2024-03-20T25:00"], "expected YYYY-MM-DD"),
    (["q1/2024-03-14", "2024-03-20"], "no occurrence"),
    ([OCC, "2024-03-20", "--unit", "ghost"], "no unit ghost"),
    ([OCC, "--cancel"], "no extension"),
    ([OCC, "2024-03-20", "--note", "a\x1bb"], "control characters"),
])
def test_extend_refuses(conf, args, msg):
    r = ctl(conf, "extend", *args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert msg in r.stderr
    assert r.stderr.count("\n") == 1


def test_extend_running_daemon(daemon_factory, tmp_path, port):
    """Extended at 09:00 on 12/03 (after -3d and -1d went out) to 15/03:
    nothing is sent in a burst for the steps of the new date that are
    already past (-7d 08/03, -3d 12/03 08:00), the feeds show 15/03 with a
    higher SEQUENCE, and the next reminder (-1d on 14/03) says the deadline
    was extended and until when."""
    conf = make_config(tmp_path, port)
    d = daemon_factory(conf, port, now="2024-03-12T07:59", speed=60).start()
    wait_for(lambda: len(maildir_msgs(tmp_path)) >= 4, what="-1d reminders")
    time.sleep(0.5)
    assert len(maildir_msgs(tmp_path)) == 4
    url = ctl(conf, "feed-url", "tu-phap").stdout.strip()
    upath = url[len(d.base):]
    ev = feed_event(d, upath)
    sev = feed_event(d, "/calendar.ics")
    assert ev["DTSTART"].dt == dt.date(2024, 3, 13)
    useq, sseq = int(ev["SEQUENCE"]), int(sev["SEQUENCE"])

    r = ctl(conf, "extend", OCC, "2024-03-15", "--note", "Theo chỉ đạo")
    assert r.returncode == 0, r.stderr

    def moved():
        e = feed_event(d, upath)
        return e if e["DTSTART"].dt == dt.date(2024, 3, 15) else None
    ev = wait_for(moved, what="unit feed on the new date")
    assert int(ev["SEQUENCE"]) > useq
    assert "gia hạn" in str(ev["DESCRIPTION"]).lower()
    sev = feed_event(d, "/calendar.ics")
    assert sev["DTSTART"].dt == dt.date(2024, 3, 15)
    assert int(sev["SEQUENCE"]) > sseq
    # the alarms count from the new date: -1d = 14/03 08:00 (+07)
    start = ev["DTSTART"].dt
    start = dt.datetime.combine(start, dt.time()) \
        if not isinstance(start, dt.datetime) else start
    when = {(start + a["TRIGGER"].dt).date() for a in ev.walk("VALARM")}
    assert dt.date(2024, 3, 14) in when, when
    # three simulated minutes later: still the 4 mails of 08:00
    time.sleep(3)
    d.stop()
    assert len(maildir_msgs(tmp_path)) == 4, \
        [m["X-Cutoffd-Notice"] for m in maildir_msgs(tmp_path)]

    # back on 14/03 just before 08:00: the -1d of the new date goes out
    d = daemon_factory(conf, port, now="2024-03-14T07:59", speed=60).start()
    wait_for(lambda: len(maildir_msgs(tmp_path)) >= 8, what="new -1d")
    time.sleep(0.5)
    d.stop()
    msgs = maildir_msgs(tmp_path)
    assert len(msgs) == 8
    new = [m for m in msgs if "~20240315" in str(m["X-Cutoffd-Notice"])]
    assert len(new) == 4, [str(m["X-Cutoffd-Notice"]) for m in msgs]
    body = new[0].get_body(("plain",)).get_content()
    assert "gia hạn đến 15/03/2024" in body, body
    assert "13/03/2024" in body            # the old date, for reference
    assert "15/03/2024" in str(new[0]["Subject"])
    # the earlier mails were not touched, and none went out twice
    keys = [str(m["X-Cutoffd-Notice"]) for m in msgs]
    assert len(keys) == len(set(keys))


def test_extend_one_unit_feed_and_late(daemon_factory, conf, port):
    """A unit's own extension shows in its feed only; its report after the
    old date but before its own is not late."""
    d = daemon_factory(conf, port, now="2024-03-14T09:00").start()
    r = ctl(conf, "extend", OCC, "2024-03-22", "--unit", "tu-phap")
    assert r.returncode == 0, r.stderr
    assert "tu-phap" in r.stdout
    tp = ctl(conf, "feed-url", "tu-phap").stdout.strip()[len(d.base):]
    mt = ctl(conf, "feed-url", "mttq").stdout.strip()[len(d.base):]
    wait_for(lambda: feed_event(d, tp)["DTSTART"].dt == dt.date(2024, 3, 22),
             what="tu-phap's feed")
    assert feed_event(d, mt)["DTSTART"].dt == dt.date(2024, 3, 13)
    r = ctl(conf, "received", "tu-phap", OCC, now="2024-03-14T09:00")
    assert r.returncode == 0, r.stderr
    assert "late" not in r.stdout
    r = ctl(conf, "received", "mttq", OCC, now="2024-03-14T09:00")
    assert "late" in r.stdout
    d.stop()


# --------------------------------------------------------------- nil returns

def test_nil_counts_as_submitted(conf):
    r = ctl(conf, "received", "mttq", OCC, "--nil", "--note",
            "Không phát sinh vụ việc", now="2024-03-12T10:00")
    assert r.returncode == 0, r.stderr
    assert "nil" in r.stdout
    # no further reminder for the pair
    rows = plan_rows(conf, "--from", "2024-03-12", "--to", "2024-04-30",
                     "--unit", "mttq")
    assert not [x for x in rows if x[1] == OCC]
    # a second record of either kind is refused
    r = ctl(conf, "received", "mttq", OCC, now="2024-03-12T10:00")
    assert r.returncode == 1 and "already recorded" in r.stderr
    r = ctl(conf, "undo", "mttq", OCC, now="2024-03-12T11:00")
    assert r.returncode == 0, r.stderr
    rows = plan_rows(conf, "--from", "2024-03-12", "--to", "2024-04-30",
                     "--unit", "mttq")
    assert [x for x in rows if x[1] == OCC]


# ------------------------------------------------------------------ history

def test_history_lists_every_event(conf):
    steps = [
        ("received", "tu-phap", OCC, "--at", "2024-03-12T09:00",
         "--note", "Bản giấy"),
        ("received", "mttq", OCC, "--nil"),
        ("undo", "tu-phap", OCC),
        ("extend", OCC, "2024-03-20"),
        ("extend", OCC, "2024-03-25T17:00", "--unit", "ld-tbxh"),
        ("extend", OCC, "--cancel"),
    ]
    for s in steps:
        r = ctl(conf, *s, now="2024-03-12T10:00")
        assert r.returncode == 0, (s, r.stderr)
    r = ctl(conf, "history")
    assert r.returncode == 0, r.stderr
    rows = [l.split("\t") for l in r.stdout.splitlines()]
    assert [x[3] for x in rows] == ["received", "nil", "undo", "extend",
                                    "extend", "extend"]
    for x in rows:
        assert x[0] == "2024-03-12T10:00"
        assert x[1] == OCC
        assert x[4] == "cli"
        assert x[5] == me()
    assert rows[0][2] == "tu-phap" and rows[0][6] == "at 2024-03-12T09:00"
    assert rows[0][7] == "Bản giấy"
    assert rows[2][7] == "Bản giấy"      # the undo keeps what it undid
    assert rows[3][2] == "*" and rows[3][6] == "until 2024-03-20"
    assert rows[4][6] == "until 2024-03-25T17:00"
    assert rows[5][6] == "cancelled"
    # filters; a unit's history includes the occurrence-wide events
    r = ctl(conf, "history", "--unit", "tu-phap")
    acts = [l.split("\t")[3] for l in r.stdout.splitlines()]
    assert acts == ["received", "undo", "extend", "extend"]
    r = ctl(conf, "history", "--occurrence", "y/2023-12-13")
    assert r.returncode == 0 and r.stdout == ""
    r = ctl(conf, "history", "--unit", "Bad Id")
    assert r.returncode == 1


# ------------------------------------------------ the API, named admins

LAN = "lan-token-0123456789abcdef0123456789"
MINH = "minh-token-0123456789abcdef0123456789"
ADMINS = """
[admin lan]
name       = Nguyễn Thị Lan
token_file = lan.token

[admin minh]
credential = minh.token
"""


def admin_conf(tmp_path, port):
    (tmp_path / "lan.token").write_text(LAN + "\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "minh.token").write_text(MINH + "\n")
    from conftest import UNITS
    return make_config(tmp_path, port, units=UNITS + ADMINS), creds


def bearer(tok):
    return {"Authorization": f"Bearer {tok}",
            "Content-Type": "application/json"}


def api(d, method, path, obj=None, tok=ADMIN_TOKEN, raw=None):
    body = raw if raw is not None else (
        json.dumps(obj).encode() if obj is not None else None)
    st, _, b = http(method, d.base + path, body, bearer(tok))
    return st, (json.loads(b) if b.strip().startswith(b"{") else b)


def status_occ(d, occ=OCC):
    st, _, body = d.get("/status.json")
    assert st == 200
    return next(o for o in json.loads(body)["occurrences"] if o["id"] == occ)


@pytest.fixture
def ad(daemon_factory, tmp_path, port):
    conf, creds = admin_conf(tmp_path, port)
    d = daemon_factory(conf, port, now="2024-03-12T10:00",
                       env={"CREDENTIALS_DIRECTORY": str(creds)}).start()
    d.conf_path = conf
    yield d
    d.stop()


def test_api_extensions(ad):
    d = ad
    st, j = api(d, "POST", "/api/extensions",
                {"occurrence": OCC, "due": "2024-03-20",
                 "note": "Theo Công văn số 12"}, tok=LAN)
    assert st == 201, j
    assert j["due_date"] == "20/03/2024" and j["unit"] is None
    assert j["actor"] == "lan" and j["source"] == "api"
    assert j["planned_due"] == "2024-03-14T00:00"     # end of 13/03
    st, j = api(d, "POST", "/api/extensions",
                {"occurrence": OCC, "due": "2024-03-21"}, tok=LAN)
    assert st == 200 and j["due_date"] == "21/03/2024"   # replaced
    o = status_occ(d)
    assert o["due_date"] == "21/03/2024" and o["extended"] is True
    # one unit, with a time, by the other admin (a systemd credential)
    st, j = api(d, "POST", "/api/extensions",
                {"occurrence": OCC, "due": "2024-03-25T17:00",
                 "unit": "tu-phap"}, tok=MINH)
    assert st == 201, j
    assert j["due"] == "2024-03-25T17:00" and j["actor"] == "minh"
    o = status_occ(d)
    u = {x["unit"]: x for x in o["units"]}
    assert u["tu-phap"]["due"] == "2024-03-25T17:00"
    assert u["tu-phap"]["extended"] is True
    assert "due" not in u["mttq"]          # the occurrence's holds
    r = ctl(d.conf_path, "status", OCC, now="2024-03-12T10:00")
    assert "due 21/03/2024" in r.stdout and "extended, was 13/03/2024" \
        in r.stdout
    assert "tu-phap\tnot-due\tdue 2024-03-25T17:00" in r.stdout
    st, j = api(d, "GET", "/api/extensions?occurrence=" + OCC)
    assert st == 200 and len(j["extensions"]) == 2
    # cancel, then nothing left to cancel
    st, j = api(d, "DELETE", f"/api/extensions/{OCC}/tu-phap", tok=MINH)
    assert st == 200 and j["deleted"] is True
    st, _ = api(d, "DELETE", f"/api/extensions/{OCC}/tu-phap", tok=MINH)
    assert st == 404
    st, _ = api(d, "DELETE", f"/api/extensions/{OCC}")
    assert st == 200
    assert status_occ(d)["due_date"] == "13/03/2024"
    # every change in the history, each admin by name
    rows = [l.split("\t") for l in
            ctl(d.conf_path, "history", "--occurrence", OCC).stdout
            .splitlines()]
    assert [(x[2], x[3], x[4], x[5], x[6]) for x in rows] == [
        ("*", "extend", "api", "lan", "until 2024-03-20"),
        ("*", "extend", "api", "lan", "until 2024-03-21"),
        ("tu-phap", "extend", "api", "minh", "until 2024-03-25T17:00"),
        ("tu-phap", "extend", "api", "minh", "cancelled"),
        ("*", "extend", "api", "admin", "cancelled"),
    ]
    assert rows[0][7] == "Theo Công văn số 12"


@pytest.mark.parametrize("body,tok,expect", [
    ({"occurrence": OCC, "due": "2024-03-20"}, None, 401),
    ({"occurrence": OCC, "due": "2024-03-20"},
     "wrong-token-0123456789-0123456789-x", 401),
    ({"occurrence": OCC}, ADMIN_TOKEN, 400),
    ({"occurrence": OCC, "due": "2024-03-01"}, ADMIN_TOKEN, 400),
    ({"occurrence": OCC, "due": "20/03/2024"}, ADMIN_TOKEN, 400),
    ({"occurrence": OCC, "due": 20240320}, ADMIN_TOKEN, 400),
    ({"occurrence": OCC, "due": "2024-03-20", "x": "1"}, ADMIN_TOKEN, 400),
    ({"occurrence": OCC, "due": "2024-03-20", "unit": "ghost"},
     ADMIN_TOKEN, 400),
    ({"occurrence": "q1/2024-03-14", "due": "2024-03-20"}, ADMIN_TOKEN, 400),
    ({"occurrence": OCC, "due": "2024-03-20", "note": "a\u0007"},
     ADMIN_TOKEN, 400),
    (b'{"occurrence": "q1/2024-03-13", "occurrence": "x", "due": "2024-03-20"}',
     ADMIN_TOKEN, 400),
    (b'[1]', ADMIN_TOKEN, 400),
])
def test_api_extensions_refuse(ad, body, tok, expect):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = bearer(tok) if tok else {"Content-Type": "application/json"}
    st, _, b = http("POST", ad.base + "/api/extensions", raw, headers)
    assert st == expect, b
    assert json.loads(b)["error"]
    assert status_occ(ad)["due_date"] == "13/03/2024"   # nothing changed


def test_api_nil_and_actors(ad):
    d = ad
    st, j = api(d, "POST", "/api/submissions",
                {"unit": "mttq", "occurrence": OCC, "nil": True,
                 "note": "Không phát sinh vụ việc"}, tok=LAN)
    assert st == 201, j
    assert j["state"] == "nil" and j["nil"] is True and j["actor"] == "lan"
    st, j = api(d, "POST", "/api/submissions",
                {"unit": "tu-phap", "occurrence": OCC, "nil": "yes"})
    assert st == 400
    st, j = api(d, "POST", "/api/submissions",
                {"unit": "tu-phap", "occurrence": OCC, "nil": False})
    assert st == 201 and j["state"] == "submitted" and j["actor"] == "admin"
    o = status_occ(d)
    assert o["submitted"] == 2 and o["nil"] == 1
    u = {x["unit"]: x for x in o["units"]}
    assert u["mttq"]["state"] == "nil"
    assert u["mttq"]["note"] == "Không phát sinh vụ việc"
    assert u["mttq"]["source"] == "api"
    st, j = api(d, "GET", "/api/submissions?occurrence=" + OCC)
    assert {s["unit"]: s["state"] for s in j["submissions"]} == {
        "mttq": "nil", "tu-phap": "submitted"}
    r = ctl(d.conf_path, "status", OCC, now="2024-03-12T10:00")
    assert any(l.startswith("mttq\tnil\t") for l in r.stdout.splitlines())
    st, _ = api(d, "DELETE", f"/api/submissions/{OCC}/mttq", tok=MINH)
    assert st == 200
    rows = [l.split("\t") for l in
            ctl(d.conf_path, "history", "--unit", "mttq").stdout.splitlines()]
    assert [(x[3], x[4], x[5]) for x in rows] == [
        ("nil", "api", "lan"), ("undo", "api", "minh")]


def post_form(d, path, fields, cookie=None):
    """(status, headers, body) of a form POST, redirects not followed."""
    import http.client
    import urllib.parse
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = cookie
    c.request("POST", path, urllib.parse.urlencode(fields), headers)
    r = c.getresponse()
    out = (r.status, r.headers, r.read())
    c.close()
    return out


def test_page_nil_note_and_actor(ad):
    """Logged in as lan on the page: a nil return with a click, recorded
    as lan from the page; notes and "Không phát sinh" are shown."""
    import re
    d = ad
    r = ctl(d.conf_path, "received", "tu-phap", OCC, "--note",
            "Gửi qua <b>bưu điện</b>", now="2024-03-12T10:00")
    assert r.returncode == 0
    st, hdr, _ = post_form(d, "/login", {"token": LAN})
    assert st == 303
    cookie = hdr["Set-Cookie"].split(";")[0]
    st, _, page = d.get("/", headers={"Cookie": cookie})
    page = page.decode()
    assert "Gửi qua &lt;b&gt;bưu điện&lt;/b&gt;" in page   # escaped
    assert "Đã đăng nhập quản trị: Nguyễn Thị Lan" in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    st, _, b = post_form(d, "/mark", {"occurrence": OCC, "unit": "ld-tbxh",
                                      "nil": "1", "csrf": csrf}, cookie)
    assert st == 303, b
    page = d.get("/", headers={"Cookie": cookie})[2].decode()
    assert "Không phát sinh" in page
    u = {x["unit"]: x for x in status_occ(d)["units"]}
    assert u["ld-tbxh"]["state"] == "nil"
    rows = [l.split("\t") for l in
            ctl(d.conf_path, "history", "--unit", "ld-tbxh").stdout
            .splitlines()]
    assert [(x[3], x[4], x[5]) for x in rows] == [("nil", "page", "lan")]
    # another admin's session is another actor; its CSRF token is its own
    st, hdr, _ = post_form(d, "/login", {"token": MINH})
    assert st == 303
    cookie2 = hdr["Set-Cookie"].split(";")[0]
    st, _, _ = post_form(d, "/mark", {"occurrence": OCC, "unit": "mttq",
                                      "csrf": csrf}, cookie2)
    assert st == 403
    page = d.get("/", headers={"Cookie": cookie2})[2].decode()
    csrf2 = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    st, _, _ = post_form(d, "/mark", {"occurrence": OCC, "unit": "mttq",
                                      "csrf": csrf2}, cookie2)
    assert st == 303
    rows = [l.split("\t") for l in
            ctl(d.conf_path, "history", "--unit", "mttq").stdout.splitlines()]
    assert [(x[3], x[4], x[5]) for x in rows] == [("received", "page",
                                                   "minh")]


@pytest.mark.parametrize("extra,msg", [
    ("[admin x]\nname = X\n", "admin 'x' needs one of token_file or "
     "credential"),
    ("[admin x]\ntoken_file = lan.token\n", "has the token of admin 'lan'"),
    ("[admin x]\ntoken_file = short.token\n", "at least 32"),
    ("[admin x]\ntoken_file = admin.token\n",
     "has the token of [daemon] admin_token_file"),
    ("[admin admin]\ntoken_file = other.token\n", "'admin' is the name"),
    ("[admin x]\ncredential = ../etc/passwd\n", "not a path"),
    ("[admin Bad]\ntoken_file = lan.token\n", "invalid admin id"),
])
def test_admin_config_errors(tmp_path, port, extra, msg):
    (tmp_path / "lan.token").write_text(LAN + "\n")
    (tmp_path / "short.token").write_text("short\n")
    (tmp_path / "other.token").write_text(
        "other-token-0123456789abcdef0123456789\n")
    from conftest import UNITS
    conf = make_config(tmp_path, port, units=UNITS +
                       "\n[admin lan]\ntoken_file = lan.token\n\n" + extra)
    r = ctl(conf, "check")
    assert r.returncode == 1, r.stdout
    assert msg in r.stderr, r.stderr
    assert f"{conf}:" in r.stderr          # FILE:LINE


def test_daemon_logs_what_cutoffctl_recorded(daemon_factory, conf, port):
    """What cutoffctl records while the daemon runs gets one line each in
    the daemon's log (action, occurrence, unit, source, actor); what was
    there before the start and the daemon's own API writes get none."""
    r = ctl(conf, "received", "mttq", OCC, now="2024-03-05T09:00")
    assert r.returncode == 0, r.stderr
    d = daemon_factory(conf, port, now="2024-03-05T10:00").start()
    st, _, _ = http("POST", d.base + "/api/submissions",
                    json.dumps({"unit": "ld-tbxh", "occurrence": OCC}).encode(),
                    AUTH)
    assert st in (200, 201), st
    steps = [("received", "tu-phap", OCC, "--note", "bản giấy"),
             ("received", "p-tan-loi", OCC, "--nil"),
             ("undo", "tu-phap", OCC),
             ("extend", OCC, "2024-03-20", "--unit", "tu-phap")]
    for args in steps:
        r = ctl(conf, *args)
        assert r.returncode == 0, (args, r.stderr)
    who = f"(source cli, actor {me()})"
    want = [f"recorded by another process: received {OCC} tu-phap {who}",
            f"recorded by another process: nil {OCC} p-tan-loi {who}",
            f"recorded by another process: undo {OCC} tu-phap {who}",
            f"recorded by another process: extend {OCC} tu-phap 2024-03-20 "
            f"{who}"]

    def logged():
        lines = [ln.split("]: ", 1)[1] for ln in d.logtext().splitlines()
                 if "recorded by another process" in ln]
        return lines if len(lines) >= len(want) else None
    lines = wait_for(logged, what="the log lines")
    time.sleep(0.3)
    assert d.stop() == 0
    lines = [ln.split("]: ", 1)[1] for ln in d.logtext().splitlines()
             if "recorded by another process" in ln]
    assert lines == want, lines
    assert "mttq" not in "\n".join(lines) and "ld-tbxh" not in "\n".join(lines)
