"""Web auth (issue 7, item 6): the admin login and the API's Bearer token
are throttled per client address, failures are logged with the address,
a logout ends the session on the server, the admin token has at least 32
characters, and the cookie is Secure behind https."""
import http.client
import re
import subprocess
import time
import urllib.parse

from conftest import ADMIN_TOKEN, CUTOFFD, Daemon, make_config

NOW = "2024-03-14T10:00"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def req(d, method, path, body=None, headers=None, source="127.0.0.1"):
    """(status, headers, text) from a chosen loopback source address."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10,
                                   source_address=(source, 0))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def login(d, token, source="127.0.0.1"):
    body = urllib.parse.urlencode({"token": token})
    return req(d, "POST", "/login", body, FORM, source)


def test_login_throttled_per_address(tmp_path, port):
    d = Daemon(make_config(tmp_path, port), port, now=NOW).start()
    try:
        # five wrong tokens are answered as before ...
        for _ in range(5):
            st, h, _ = login(d, "wrong-wrong-wrong-wrong-wrong-wrong")
            assert st == 303 and h["Location"] == "/?login=failed"
        # ... then this address waits, even with the right token
        st, h, text = login(d, "wrong-wrong-wrong-wrong-wrong-wrong")
        assert st == 429, text
        wait = int(h["Retry-After"])
        assert 1 <= wait <= 3600
        st, h, _ = login(d, ADMIN_TOKEN)
        assert st == 429 and "Set-Cookie" not in h
        # the Bearer token of the API counts on the same table
        st, h, body = req(d, "GET", "/api/submissions",
                          headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        assert st == 429 and int(h["Retry-After"]) >= 1, body
        # another address is not held up
        st, h, _ = login(d, ADMIN_TOKEN, source="127.0.0.2")
        assert st == 303 and h["Location"] == "/"
        assert "session=" in h["Set-Cookie"]
        # failures are logged with the client's address
        log = d.logtext()
        assert re.search(r"wrong admin token from 127\.0\.0\.1\b", log)
        assert "next attempt waits" in log
        # after the wait, the right token opens a session again
        time.sleep(wait + 0.2)
        st, h, _ = login(d, ADMIN_TOKEN)
        assert st == 303 and h["Location"] == "/"
    finally:
        d.stop()


def test_api_bearer_throttled(tmp_path, port):
    d = Daemon(make_config(tmp_path, port), port, now=NOW).start()
    try:
        bad = {"Authorization": "Bearer " + "x" * 40}
        for _ in range(5):
            assert req(d, "GET", "/api/submissions", headers=bad)[0] == 401
        st, h, body = req(d, "GET", "/api/submissions", headers=bad)
        assert st == 429 and "Retry-After" in h, body
        # no token at all is not a guess: another address is fine, and
        # requests without a token never lock anyone out
        for _ in range(10):
            assert req(d, "GET", "/api/submissions",
                       source="127.0.0.3")[0] == 401
        st, _, _ = req(d, "GET", "/api/submissions", source="127.0.0.3",
                       headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        assert st == 200
    finally:
        d.stop()


def test_logout_ends_the_session(tmp_path, port):
    d = Daemon(make_config(tmp_path, port), port, now=NOW).start()
    try:
        st, h, _ = login(d, ADMIN_TOKEN)
        assert st == 303
        cookie = h["Set-Cookie"].split(";")[0]
        assert cookie.startswith("session=") and len(cookie) > 40
        st, _, page = req(d, "GET", "/", headers={"Cookie": cookie})
        assert st == 200 and 'action="/logout"' in page
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)

        st, h, _ = req(d, "POST", "/logout",
                       urllib.parse.urlencode({"csrf": csrf}),
                       dict(FORM, Cookie=cookie))
        assert st == 303 and "Max-Age=0" in h["Set-Cookie"]

        # a copy of the old cookie opens nothing any more
        st, _, page = req(d, "GET", "/", headers={"Cookie": cookie})
        assert st == 200 and 'action="/logout"' not in page
        assert 'action="/mark"' not in page
        body = urllib.parse.urlencode({"occurrence": "q1/2024-03-13",
                                       "unit": "mttq", "csrf": csrf})
        st, _, _ = req(d, "POST", "/mark", body, dict(FORM, Cookie=cookie))
        assert st == 403
        assert "received q1/2024-03-13 mttq" not in d.logtext()
    finally:
        d.stop()


def test_short_admin_token_refused(tmp_path, port):
    conf = make_config(tmp_path, port)
    (tmp_path / "admin.token").write_text("only-twenty-chars-ab\n")
    r = subprocess.run([str(CUTOFFD), "--check", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "admin.token" in r.stderr and "at least 32" in r.stderr
    assert re.search(r"cutoffd\.conf:\d+: ", r.stderr), r.stderr


def test_secure_cookie_behind_https(tmp_path, port):
    conf = make_config(tmp_path, port)
    conf.write_text(conf.read_text().replace(
        f"public_url = http://127.0.0.1:{port}",
        "public_url = https://baocao.example.vn"))
    d = Daemon(conf, port, now=NOW).start()
    try:
        st, h, _ = login(d, ADMIN_TOKEN)
        assert st == 303
        attrs = [a.strip() for a in h["Set-Cookie"].split(";")]
        assert "Secure" in attrs and "HttpOnly" in attrs
    finally:
        d.stop()
