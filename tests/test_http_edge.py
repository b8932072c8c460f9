"""HTTP edge cases, black-box: odd paths and methods, conditional GET,
input limits, token handling (no oracle, nothing in the log or Referer)."""
import json
import socket
import urllib.parse

import pytest

from conftest import ADMIN_TOKEN, ctl, http, make_config

NOW = "2024-03-20T10:00"
CAL = "cal-tok.1~2"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": "application/json"}


@pytest.fixture
def d(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port,
                       extra_daemon=f"calendar_token = {CAL}")
    dm = daemon_factory(conf, port, now=NOW).start()
    dm.conf_path = conf
    yield dm
    dm.stop()


def raw(d, data, timeout=5):
    """Sends bytes as they are (no client-side path clean-up); returns the
    status code of the first answer, or None when the server closed."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                return None
            got += chunk
    return int(got.split(b" ", 2)[1])


def cal_url(d):
    return d.base + "/calendar.ics?token=" + urllib.parse.quote(CAL)


def unit_url(d, unit="tu-phap"):
    r = ctl(d.conf_path, "feed-url", unit)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("path", [
    "/units/../calendar.ics", "/units/.ics", "/units/..ics",
    "/units/%2e%2e/calendar.ics", "/units/TU-PHAP.ics",
    "/units/tu-phap%00.ics", "/units/tu-phap.ics/", "/units/tu-phap",
    "/units/" + "a" * 65 + ".ics", "/units/" + "a" * 5000 + ".ics",
    "//calendar.ics", "/calendar.ics/",
    "/units//tu-phap.ics",
], ids=lambda p: p[:40])
def test_odd_paths_are_404(d, path):
    token = unit_url(d).split("token=")[1]
    st = raw(d, f"GET {path}?token={token} HTTP/1.1\r\nHost: x\r\n"
                f"Connection: close\r\n\r\n".encode())
    assert st in (404, 414), (path, st)
    assert http("GET", d.base + "/healthz")[0] == 200


def test_percent_encoded_path_is_the_same_feed(d):
    url = unit_url(d)
    st, h, body = http("GET", url.replace("/tu-phap.ics", "/tu%2Dphap%2eics"))
    assert st == 200 and body.startswith(b"BEGIN:VCALENDAR")


def test_unit_token_no_oracle(d):
    """Unknown unit, known unit with a wrong token, no token: one answer."""
    answers = set()
    for path in ["/units/tu-phap.ics?token=wrong", "/units/nope.ics?token=x",
                 "/units/tu-phap.ics", "/units/tu-phap.ics?token=",
                 "/units/tu-phap.ics?token"]:
        st, _, body = d.get(path)
        answers.add((st, body))
    assert answers == {(404, b"not found\n")}
    # another unit's token does not open this one
    other = unit_url(d, "mttq").split("token=")[1]
    assert d.get("/units/tu-phap.ics?token=" + other)[0] == 404


def test_calendar_token(d):
    assert d.get("/calendar.ics")[0] == 403
    assert d.get("/calendar.ics?token=cal-tok")[0] == 403
    assert d.get("/calendar.ics?token=" + CAL + "x")[0] == 403
    assert d.get("/status.json?token=" + CAL)[0] == 200
    assert http("GET", cal_url(d))[0] == 200
    assert d.get("/status.json")[0] == 401


def test_methods(d):
    for path in ["/calendar.ics", "/units/tu-phap.ics", "/healthz"]:
        for m in ["POST", "PUT", "DELETE", "PATCH"]:
            st, h, _ = http(m, d.base + path, body=b"x")
            assert st == 405 and h["Allow"] == "GET, HEAD", (m, path)
    st, h, _ = http("PUT", d.base + "/status.json", body=b"x")
    assert st == 405 and "GET" in h["Allow"]
    st, h, _ = http("GET", d.base + "/login")
    assert st == 405 and h["Allow"] == "POST"
    assert raw(d, b"BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == 405


def test_head_and_conditional_get(d):
    url = cal_url(d)
    st, h, body = http("GET", url)
    assert st == 200
    etag, lm = h["ETag"], h["Last-Modified"]
    assert etag.startswith('"') and lm.endswith("GMT")
    st, hh, hbody = http("HEAD", url)
    assert st == 200 and hbody == b""
    assert hh["ETag"] == etag and int(hh["Content-Length"]) == len(body)
    for inm in [etag, "W/" + etag, f'"nope", {etag}', "*"]:
        st, h2, b2 = http("GET", url, headers={"If-None-Match": inm})
        assert st == 304 and b2 == b"" and h2["ETag"] == etag, inm
    assert http("HEAD", url, headers={"If-None-Match": etag})[0] == 304
    assert http("GET", url, headers={"If-None-Match": '"nope"'})[0] == 200
    # If-None-Match wins over If-Modified-Since (RFC 7232 3.3)
    assert http("GET", url, headers={"If-None-Match": '"nope"',
                                     "If-Modified-Since": lm})[0] == 200
    assert http("GET", url, headers={"If-Modified-Since": lm})[0] == 304
    assert http("GET", url, headers={
        "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})[0] == 200
    assert http("GET", url, headers={"If-Modified-Since": "garbage"})[0] == 200
    # garbage If-None-Match lists are simply no match
    for inm in ['"unterminated', "W/", ",,,", "W/,"]:
        assert http("GET", url, headers={"If-None-Match": inm})[0] == 200

    # a change: new ETag, the old one no longer matches
    st, _, _ = http("POST", d.base + "/api/submissions",
                    json.dumps({"unit": "tu-phap",
                                "occurrence": "q1/2024-03-13"}).encode(), AUTH)
    assert st == 201
    st, h3, body3 = http("GET", url, headers={"If-None-Match": etag})
    assert st == 200 and h3["ETag"] != etag and body3 != body


def test_limits(d):
    big = b"x" * (64 * 1024 + 1)
    st, _, _ = http("POST", d.base + "/api/submissions", big, AUTH)
    assert st == 413
    # announced but not sent: refused before the body is read
    assert raw(d, b"POST /api/submissions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100000000\r\n\r\n") == 413
    # chunked, no length announced
    chunk = b"%x\r\n%s\r\n" % (40000, b"y" * 40000)
    assert raw(d, b"POST /api/submissions HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                  + chunk * 2 + b"0\r\n\r\n") == 413
    assert raw(d, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 +
               b"\r\n\r\n") in (413, 431, None)
    assert raw(d, b"GET /?q=" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n"
                  b"\r\n") in (414, 431, None)
    assert http("GET", d.base + "/healthz")[0] == 200


def test_tokens_stay_out_of_log_and_referer(d):
    url = unit_url(d)
    token = url.split("token=")[1]
    for u in [url, url + "x", cal_url(d),
              d.base + "/?token=" + urllib.parse.quote(CAL)]:
        st, h, _ = http("GET", u)
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Content-Type-Options"] == "nosniff"
    http("GET", d.base + "/status.json",
         headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"})
    http("POST", d.base + "/login", b"token=" + ADMIN_TOKEN.encode() + b"x",
         {"Content-Type": "application/x-www-form-urlencoded"})
    log = d.logtext()
    assert "GET /calendar.ics" in log   # requests are logged ...
    for secret in [token, "cal-tok", ADMIN_TOKEN]:
        assert secret not in log        # ... without their tokens


def test_page_with_calendar_token(d):
    """A reader let in by ?token= keeps it on the JSON link; a failed
    admin login says so even on the locked page."""
    st, h, body = http("GET", d.base + "/?token=" + CAL)
    assert st == 200
    assert "text/html" in h["Content-Type"]
    assert "Content-Security-Policy" in h
    assert 'href="/status.json?token=cal-tok.1~2"' in body.decode()
    st, _, body = d.get("/?login=failed")
    assert st == 401 and "Mã quản trị không đúng." in body.decode()
