"""GET /metrics: a real scrape checked by promtool, counters that match what
a real SMTP server (aiosmtpd) accepted, refused and deferred, gauges of the
state store, and who may read it (metrics_allow, loopback by default)."""
import http.client
import json
import re
import shutil
import subprocess
import time

import pytest

from conftest import ADMIN_TOKEN, CUTOFFD, ctl, http as http_req, init_state, make_config
from test_notices import BEFORE, smtp, smtp_mail, wait_for  # noqa: F401

SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def scrape(d):
    st, hdrs, body = d.get("/metrics")
    assert st == 200, body
    assert hdrs["Content-Type"].startswith("text/plain; version=0.0.4")
    return body.decode()


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def promtool_check(text):
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool missing: install Debian's prometheus package "
                    "(scripts/install-deps)")
    r = subprocess.run([exe, "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # promtool prints lint problems even when it exits 0 for some of them
    assert r.stdout.strip() == "" and r.stderr.strip() == "", \
        r.stdout + r.stderr


def test_scrape_counts_what_the_smtp_server_saw(daemon_factory, tmp_path,
                                                port, smtp):
    tries = {}

    def fail(msg):
        to = str(msg["To"])
        tries[to] = tries.get(to, 0) + 1
        if "mttq" in to:
            return "550 5.1.1 mailbox unknown"
        if "tuphap" in to and tries[to] <= 2:
            return "451 4.3.0 try again later"
        return None

    sink = smtp(fail)
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    # a report recorded by cutoffctl before the start, one through the API
    init_state(conf, port, now=BEFORE)
    r = ctl(conf, "received", "p-tan-loi", "q1/2024-03-13",
            now="2024-03-05T10:00")
    assert r.returncode == 0, r.stderr
    # 600x: a 10-minute backoff takes one real second
    d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
    first = samples(scrape(d))
    assert first["cutoffd_build_info{version=\"0.1.0\"}"] == 1
    assert first["cutoffd_config_last_reload_success"] == 1
    assert first["cutoffd_state_store_up"] == 1
    assert first['cutoffd_submissions_total{source="cli"}'] == 1
    assert first['cutoffd_submissions_total{source="api"}'] == 0

    # -7d reminders to ldtbxh, tu-phap (twice 451, then 250) and mttq
    # (550); p-tan-loi has reported
    wait_for(lambda: len(sink.messages) >= 2 and
             any("tuphap" in str(m["To"]) for _, m in sink.messages),
             timeout=60, what="the retried mail")
    wait_for(lambda: any("mttq" in str(m["To"]) for m in sink.attempts),
             what="the refused mail")
    st, _, body = http_req(
        "POST", d.base + "/api/submissions",
        json.dumps({"unit": "ld-tbxh", "occurrence": "q1/2024-03-13"}).encode(),
        {"Authorization": f"Bearer {ADMIN_TOKEN}",
         "Content-Type": "application/json"})
    assert st == 201, body
    text = wait_for(lambda: (lambda t: t if samples(t).get(
        'cutoffd_notices{state="failed",channel="email"}') == 1 else None)(
            scrape(d)), what="the failure in the gauge")
    d.stop()
    promtool_check(text)
    s = samples(text)

    sent = len(sink.messages)
    refused = sum(1 for m in sink.attempts if "mttq" in str(m["To"]))
    deferred = len(sink.attempts) - sent - refused
    assert (sent, refused, deferred) == (2, 1, 2)
    assert s['cutoffd_notices_sent_total{channel="email"}'] == sent
    assert s['cutoffd_notices_failed_total{channel="email"}'] == refused
    assert s['cutoffd_notices_deferred_total{channel="email"}'] == deferred
    assert s['cutoffd_notices_sent_total{channel="webhook"}'] == 0
    assert s['cutoffd_notices{state="sent",channel="email"}'] == sent
    assert s['cutoffd_notices{state="failed",channel="email"}'] == refused
    assert s['cutoffd_notices{state="pending",channel="email"}'] == 0
    assert s['cutoffd_notices{state="retrying",channel="email"}'] == 0
    assert s['cutoffd_submissions_total{source="api"}'] == 1
    assert s['cutoffd_submissions_total{source="cli"}'] == 1
    assert s["cutoffd_units"] == 4
    # the engine scanned up to a time on the simulated clock
    assert s["cutoffd_last_scan_timestamp_seconds"] >= 1709686740  # BEFORE
    for name in ("cutoffd_notices", "cutoffd_notices_sent_total",
                 "cutoffd_notices_failed_total", "cutoffd_units_missing",
                 "cutoffd_submissions_total",
                 "cutoffd_last_scan_timestamp_seconds",
                 "cutoffd_config_last_reload_success",
                 "cutoffd_config_last_reload_timestamp_seconds",
                 "cutoffd_build_info"):
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text


def test_reload_gauges_and_missing_units(daemon_factory, tmp_path, port):
    # the status page's window, which the gauge shares: 30 days back
    conf = make_config(tmp_path, port, extra_daemon="history = 30d")
    # the state store is first used before q1/2024-03-13 is due
    d = daemon_factory(conf, port, now="2024-03-12T09:00").start()
    d.stop()
    d = daemon_factory(conf, port, now="2024-03-14T09:00").start()
    s = samples(scrape(d))
    assert s['cutoffd_units_missing{cycle="q1"}'] == 4
    assert s['cutoffd_units_missing{cycle="h1"}'] == 0
    assert s['cutoffd_units_missing{cycle="y"}'] == 0   # 13/12/2023: older
    loaded = s["cutoffd_config_last_reload_timestamp_seconds"]
    assert loaded >= 1710381600  # 2024-03-14T09:00+07

    # cutoffctl writes through its own connection: seen at the next scrape
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13",
            now="2024-03-14T09:05")
    assert r.returncode == 0, r.stderr
    assert samples(scrape(d))['cutoffd_units_missing{cycle="q1"}'] == 3

    # a broken reload: 0, the old configuration keeps serving
    good = conf.read_text()
    conf.write_text(good.replace("workdays   = mon-fri",
                                 "workdays   = mon-fri\nmetrics_allow = 10.1.2.3/8"))
    d.reload()
    s = samples(scrape(d))
    assert s["cutoffd_config_last_reload_success"] == 0
    assert s["cutoffd_config_last_reload_timestamp_seconds"] >= loaded
    assert s['cutoffd_units_missing{cycle="q1"}'] == 3
    # a good one: 1 again, and the gauges follow the new configuration
    conf.write_text(good.replace("[unit mttq]", "[unit mttq-gone]")
                    .replace("[unit tu-phap]", "[unit tu-phap-gone]"))
    d.reload()
    s = samples(scrape(d))
    assert s["cutoffd_config_last_reload_success"] == 1
    # tu-phap's report no longer counts, tu-phap-gone owes one
    assert s['cutoffd_units_missing{cycle="q1"}'] == 4
    assert s["cutoffd_units"] == 4
    d.stop()


def get_from(source, port, path="/metrics"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                   source_address=(source, 0))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_access_loopback_and_metrics_allow(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port)
    good = conf.read_text()
    d = daemon_factory(conf, port, now="2024-03-14T09:00").start()
    # default: any loopback client
    assert get_from("127.0.0.1", port)[0] == 200
    assert get_from("127.0.0.2", port)[0] == 200
    # metrics_allow replaces the default
    conf.write_text(good.replace(
        "workdays   = mon-fri",
        "workdays   = mon-fri\nmetrics_allow = 127.0.0.1/32, 2001:db8::/32"))
    assert "reloaded:" in d.reload()
    assert get_from("127.0.0.1", port)[0] == 200
    st, body = get_from("127.0.0.2", port)
    assert st == 403 and b"cutoffd_" not in body
    # the rest of the server is not affected
    assert get_from("127.0.0.2", port, "/healthz")[0] == 200
    conf.write_text(good.replace(
        "workdays   = mon-fri", "workdays   = mon-fri\nmetrics_allow = 127.0.0.0/8"))
    d.reload()
    st, body = get_from("127.0.0.2", port)
    assert st == 200 and b"cutoffd_build_info" in body
    # only reads
    st, hdrs, _ = http_req("POST", d.base + "/metrics", b"x",
                           {"Content-Type": "text/plain"})
    assert st == 405 and hdrs["Allow"] == "GET, HEAD"
    d.stop()


@pytest.mark.parametrize("value,why", [
    ("10.0.0.1/8", "bits set past the prefix"),
    ("127.0.0.0/33", "0 to 32"),
    ("::1/129", "0 to 128"),
    ("10/8", "not an IPv4 or IPv6 address"),
    ("010.0.0.0/8", "not an IPv4 or IPv6 address"),
    ("fe80::1%eth0", "not an IPv4 or IPv6 address"),
    ("127.0.0.0/08", "decimal"),
    ("127.0.0.0/+8", "decimal"),
    ("127.0.0.0/", "decimal"),
    ("127.0.0.0/8 localhost", "not an IPv4 or IPv6 address"),
])
def test_metrics_allow_is_parsed_strictly(tmp_path, port, value, why):
    conf = make_config(tmp_path, port,
                       extra_daemon=f"metrics_allow = {value}")
    line = next(i for i, l in enumerate(conf.read_text().splitlines(), 1)
                if l.startswith("metrics_allow"))
    r = subprocess.run([str(CUTOFFD), "--check", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout
    assert f"{conf}:{line}: metrics_allow: invalid value" in r.stderr, r.stderr
    assert why in r.stderr, r.stderr


def test_metrics_allow_accepts_v4_v6_and_bare_addresses(tmp_path, port):
    conf = make_config(tmp_path, port, extra_daemon=(
        "metrics_allow = 127.0.0.1, 10.0.0.0/8 192.168.0.0/16,"
        "::1, 2001:db8::/32, 0.0.0.0/0"))
    r = subprocess.run([str(CUTOFFD), "--check", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
