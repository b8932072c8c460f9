"""The unit's "Đơn vị đã gửi báo cáo" link, end to end: taken from a real
reminder mail (aiosmtpd, MIME decoded), opened and confirmed over real
HTTP against the real daemon; time moved with --now."""
import http.client as httpc
import json
import re
import time
import urllib.parse

import pytest

from conftest import CYCLES, ctl, http, init_state, make_config
from test_notices import BEFORE, smtp, smtp_mail, wait_for  # noqa: F401

OCC = "q1/2024-03-13"
UNIT = "ld-tbxh"
LINK_RE = re.compile(r"(http://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9._-]+)")


def links_from_mails(sink):
    """{unit address: confirm URL} from the decoded mails"""
    out = {}
    with sink.lock:
        msgs = list(sink.messages)
    for rcpts, msg in msgs:
        m = LINK_RE.search(msg.get_content())
        if m:
            out[rcpts[0]] = m.group(1)
    return out


def start_and_get_links(daemon_factory, tmp_path, port, smtp, cycles=CYCLES):
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=cycles)
    init_state(conf, port, now=BEFORE)
    d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    wait_for(lambda: len(links_from_mails(sink)) >= 4, what="4 reminders")
    return conf, d, sink, links_from_mails(sink)


def history(conf, unit=UNIT):
    r = ctl(conf, "history", "--unit", unit)
    assert r.returncode == 0, r.stderr
    return [l.split("\t") for l in r.stdout.splitlines()]


def unit_state(conf, unit=UNIT, now="2024-03-06T09:00"):
    r = ctl(conf, "status", OCC, now=now)
    assert r.returncode == 0, r.stderr
    for l in r.stdout.splitlines():
        if l.startswith(unit + "\t"):
            return l.split("\t")[1]
    raise AssertionError(r.stdout)


def path_of(url):
    return urllib.parse.urlsplit(url).path


def post(port, path, fields, headers=None):
    c = httpc.HTTPConnection("127.0.0.1", port, timeout=10)
    body = urllib.parse.urlencode(fields)
    h = {"Content-Type": "application/x-www-form-urlencoded"}
    h.update(headers or {})
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    out = (r.status, r.read().decode())
    c.close()
    return out


def nonce_of(page):
    m = re.search(r'name="nonce" value="([A-Za-z0-9_-]+)"', page)
    assert m, page
    return m.group(1)


def test_link_in_mail_get_changes_nothing_post_proposes(daemon_factory,
                                                       tmp_path, port, smtp):
    conf, d, sink, links = start_and_get_links(daemon_factory, tmp_path,
                                               port, smtp)
    url = links["ldtbxh@example.vn"]
    assert f"/confirm/{UNIT}.q1.2024-03-13." in url
    # every unit has its own link
    assert len(set(links.values())) == len(links)
    before = d.get("/status.json")[2]
    st, hdrs, body = d.get(path_of(url))
    page = body.decode()
    assert st == 200
    assert "Phòng Lao động - Thương binh và Xã hội" in page
    assert "Báo cáo quý I" in page and "13/03/2024" in page
    assert "<script" not in page.lower() and "http" not in page.split(
        "<body>")[1]          # no outside assets
    assert hdrs["Referrer-Policy"] == "no-referrer"
    # a GET (a mail scanner's prefetch) changes nothing, twice over
    d.get(path_of(url))
    st, _, body2 = http("HEAD", d.base + path_of(url))
    assert st == 200
    after = d.get("/status.json")[2]
    strip = lambda b: {k: v for k, v in json.loads(b).items()
                       if k not in ("generated", "now")}
    assert strip(before) == strip(after)
    assert history(conf) == []

    # a cross-site POST and one without the page's nonce are refused
    nonce = nonce_of(page)
    st, _ = post(port, path_of(url), {"nonce": nonce},
                 {"Sec-Fetch-Site": "cross-site"})
    assert st == 403
    st, _ = post(port, path_of(url), {"nonce": nonce},
                 {"Origin": "http://evil.example"})
    assert st == 403
    st, _ = post(port, path_of(url), {"nonce": "x" * 43})
    assert st == 403
    assert history(conf) == []

    # the browser's own POST records a proposal, once
    same = {"Origin": f"http://127.0.0.1:{port}",
            "Sec-Fetch-Site": "same-origin"}
    st, text = post(port, path_of(url), {"nonce": nonce}, same)
    assert st == 200, text
    st, _ = post(port, path_of(url), {"nonce": nonce}, same)
    assert st == 200
    rows = history(conf)
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        (OCC, UNIT, "proposed", "link")]
    assert unit_state(conf) == "proposed"
    j = json.loads(d.get("/status.json")[2])
    units = {u["unit"]: u for o in j["occurrences"] if o["id"] == OCC
             for u in o["units"]}
    assert units[UNIT]["state"] == "proposed"
    assert units[UNIT]["proposed_by"] == "link"
    assert units["mttq"]["state"] == "not-due"
    home = d.get("/")[2].decode()
    assert "Đề xuất — chờ xác nhận" in home and "Đơn vị báo đã gửi" in home
    csv = d.get("/status.csv")[2].decode("utf-8-sig")
    assert any(l.startswith(OCC + ",") and f",{UNIT}," in l and
               ",proposed," in l for l in csv.splitlines())
    # the page now says it was reported, without a form
    page = d.get(path_of(url))[2].decode()
    assert "<form" not in page
    d.stop()
    # the MAC, a capability, is in no log line (requests are logged at -v)
    log = d.logtext()
    assert "/confirm/ld-tbxh.q1.2024-03-13.<mac>" in log
    assert url.rsplit(".", 1)[1] not in log
    # confirmed by the secretariat: a submission with source link
    r = ctl(conf, "confirm", UNIT, OCC, now="2024-03-06T09:00")
    assert r.returncode == 0 and "source link" in r.stdout, r
    assert unit_state(conf) == "submitted"
    assert [(r[3], r[4]) for r in history(conf)][-1] == ("confirmed", "link")


def test_link_record_stops_the_chase(daemon_factory, tmp_path, port, smtp):
    cycles = CYCLES.replace("shift    = next-workday",
                            "shift    = next-workday\nlink     = record")
    conf, d, sink, links = start_and_get_links(daemon_factory, tmp_path,
                                               port, smtp, cycles)
    url = links["ldtbxh@example.vn"]
    page = d.get(path_of(url))[2].decode()
    st, _ = post(port, path_of(url), {"nonce": nonce_of(page)})
    assert st == 200
    rows = history(conf)
    assert [(r[3], r[4]) for r in rows] == [("received", "link")]
    assert unit_state(conf) == "submitted"
    # already submitted: the link says so
    page = d.get(path_of(url))[2].decode()
    assert "đã được ghi nhận" in page and "<form" not in page
    d.stop()
    # the next reminder (-3d, 10/03 is a Sunday: shifted) reaches the
    # others, not this unit
    with sink.lock:
        sink.messages.clear()
    d = daemon_factory(conf, port, now="2024-03-08T07:59", speed=60).start()
    wait_for(lambda: len(links_from_mails(sink)) >= 3, what="3 reminders")
    time.sleep(1.0)
    got = set(links_from_mails(sink))
    assert "ldtbxh@example.vn" not in got and len(got) == 3
    d.stop()


def tamper(url):
    head, mac = url.rsplit(".", 1)
    c = "A" if mac[0] != "A" else "B"
    return head + "." + c + mac[1:]


def test_bad_tokens_refused_and_throttled(daemon_factory, tmp_path, port,
                                          smtp):
    conf, d, sink, links = start_and_get_links(daemon_factory, tmp_path,
                                               port, smtp)
    url = links["ldtbxh@example.vn"]
    mine = path_of(url)
    other = path_of(links["mttq@example.vn"])
    bad = [
        tamper(mine),                                   # MAC changed
        "/confirm/mttq." + mine.split(".", 1)[1],       # other unit's MAC
        mine[:-5],                                      # truncated
        "/confirm/" + UNIT + ".q1.2024-03-14." + mine.rsplit(".", 1)[1],
    ]
    for p in bad:
        st, _, body = d.get(p)
        assert st == 403, p
        assert "không hợp lệ" in body.decode()
    assert history(conf) == [] and history(conf, "mttq") == []
    # the good ones still work (4 strikes so far, 5 are free)
    assert d.get(other)[0] == 200
    # the fifth wrong one starts a wait: then even a good link gets 429
    assert d.get(tamper(other))[0] == 403
    st, hdrs, _ = d.get(mine)
    assert st == 429 and int(hdrs["Retry-After"]) >= 1
    st, _ = post(port, mine, {"nonce": "x"})
    assert st == 429
    d.stop()


def test_expired_and_unconfigured_links_refused(daemon_factory, tmp_path,
                                                port, smtp):
    conf, d, sink, links = start_and_get_links(daemon_factory, tmp_path,
                                               port, smtp)
    mine = path_of(links["ldtbxh@example.vn"])
    page = d.get(mine)[2].decode()
    nonce = nonce_of(page)
    d.stop()
    # until = 30d after the due date (end of 13/03): valid on 12/04 ...
    d = daemon_factory(conf, port, now="2024-04-12T12:00").start()
    assert d.get(mine)[0] == 200
    d.stop()
    # ... not on 14/04, neither to look at nor to post
    d = daemon_factory(conf, port, now="2024-04-14T12:00").start()
    st, _, body = d.get(mine)
    assert st == 410 and "hết hạn" in body.decode()
    assert post(port, mine, {"nonce": nonce})[0] == 410
    assert history(conf) == []
    d.stop()
    # a unit no longer in the configuration: its link is void
    text = conf.read_text()
    start = text.index("[unit ld-tbxh]")
    end = text.index("[unit tu-phap]")
    conf.write_text(text[:start] + text[end:])
    d = daemon_factory(conf, port, now="2024-03-07T12:00").start()
    assert d.get(mine)[0] == 410
    d.stop()


def test_webhook_confirm_url(daemon_factory, tmp_path, port):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    got = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers["Content-Length"])
            got.append(json.loads(self.rfile.read(n)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    units = ("[unit ld-tbxh]\nname = Phòng Lao động\nemail = a@example.vn\n"
             f"webhook = http://127.0.0.1:{srv.server_port}/hook\n")
    conf = make_config(tmp_path, port, units=units, webhook="")
    init_state(conf, port, now=BEFORE)
    d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
    wait_for(lambda: got, what="a webhook")
    d.stop()
    srv.shutdown()
    url = got[0]["confirm_url"]
    assert url.startswith(f"http://127.0.0.1:{port}/confirm/ld-tbxh.q1.")
    assert url in got[0]["text"]
    # the link works
    d = daemon_factory(conf, port, now=BEFORE).start()
    assert d.get(path_of(url))[0] == 200
    d.stop()


def test_policy_link_key_checked(tmp_path, port):
    import subprocess
    from conftest import CUTOFFD
    cycles = CYCLES.replace("shift    = next-workday",
                            "shift    = next-workday\nlink     = maybe")
    conf = make_config(tmp_path, port, cycles=cycles)
    r = subprocess.run([str(CUTOFFD), "-c", str(conf), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    line = conf.read_text().splitlines().index("link     = maybe") + 1
    assert f"{conf}:{line}: link: invalid value 'maybe'" in r.stderr
    assert "expected propose or record" in r.stderr
