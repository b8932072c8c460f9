"""The running daemon: feeds over HTTP parsed with python3-icalendar,
conditional GET, private feeds, reload (good and broken), stop, systemd
notifications."""
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import icalendar
import pytest

from conftest import ROOT, ctl, http, make_config

NOW = "2024-03-01T09:00"


def events(body):
    cal = icalendar.Calendar.from_ical(body)
    return cal, {str(e["UID"]): e for e in cal.walk("VEVENT")}


def start(daemon_factory, conf, port, **kw):
    return daemon_factory(conf, port, now=kw.pop("now", NOW), **kw).start()


def test_secretariat_feed_dates(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port)
    st, hdr, body = d.get("/calendar.ics")
    assert st == 200, body
    assert hdr["Content-Type"].startswith("text/calendar")
    cal, evs = events(body)
    assert str(cal["VERSION"]) == "2.0"
    assert "PRODID" in cal
    due = {}
    for e in evs.values():
        start_ = e["DTSTART"].dt
        day = start_ if not isinstance(start_, dt.datetime) else start_.date()
        due[str(e["SUMMARY"])] = due.get(str(e["SUMMARY"]), []) + [day]
        assert "DTSTAMP" in e and "SEQUENCE" in e
    days = sorted(x for v in due.values() for x in v)
    # Window: 400 days back and ahead of 01/03/2024.
    assert dt.date(2024, 3, 13) in days
    assert dt.date(2024, 6, 13) in days
    assert dt.date(2024, 9, 13) in days
    assert dt.date(2024, 12, 13) in days
    assert dt.date(2023, 12, 13) in days
    # 13/3/2025 is a Thursday: no shift
    assert dt.date(2025, 3, 13) in days
    # the description counts units and names the missing ones
    ev = next(e for e in evs.values()
              if e["DTSTART"].dt == dt.date(2024, 3, 13))
    desc = str(ev["DESCRIPTION"])
    assert "0/4" in desc
    assert "Phòng Tư pháp" in desc
    d.stop()


def test_conditional_get_and_head(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port)
    st, hdr, body = d.get("/calendar.ics")
    etag, lm = hdr["ETag"], hdr["Last-Modified"]
    assert etag and lm
    st2, _, body2 = d.get("/calendar.ics", {"If-None-Match": etag})
    assert st2 == 304 and body2 == b""
    st3, _, _ = d.get("/calendar.ics", {"If-Modified-Since": lm})
    assert st3 == 304
    st4, hdr4, body4 = http("HEAD", d.base + "/calendar.ics")
    assert st4 == 200 and body4 == b"" and hdr4["ETag"] == etag
    # Same content, same ETag, same UIDs.
    st5, hdr5, body5 = d.get("/calendar.ics")
    assert hdr5["ETag"] == etag
    assert events(body5)[1].keys() == events(body)[1].keys()
    d.stop()


def test_unit_feed_token_and_done_marker(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port)
    url = ctl(conf, "feed-url", "tu-phap").stdout.strip()
    path = url[len(d.base):]
    st, _, body = d.get(path)
    assert st == 200, body
    _, evs = events(body)
    q1 = next(e for e in evs.values()
              if e["DTSTART"].dt == dt.date(2024, 3, 13))
    assert q1.walk("VALARM"), "a pending occurrence carries alarms"
    seq_before = int(q1["SEQUENCE"])
    # wrong and missing tokens
    assert d.get("/units/tu-phap.ics?token=deadbeef")[0] in (403, 404)
    assert d.get("/units/tu-phap.ics")[0] in (403, 404)
    assert d.get("/units/ghost.ics?token=x")[0] in (403, 404)
    # another unit's token does not open this feed
    other = ctl(conf, "feed-url", "mttq").stdout.strip().split("token=")[1]
    assert d.get(f"/units/tu-phap.ics?token={other}")[0] in (403, 404)
    # a recorded report marks the event done, at once
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13", now=NOW)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, evs = events(d.get(path)[2])
        q1 = next(e for e in evs.values()
                  if e["DTSTART"].dt == dt.date(2024, 3, 13))
        if int(q1["SEQUENCE"]) > seq_before:
            break
        time.sleep(0.1)
    assert int(q1["SEQUENCE"]) > seq_before
    assert not q1.walk("VALARM")
    # and the secretariat's event counts it
    _, sevs = events(d.get("/calendar.ics")[2])
    sq1 = next(e for e in sevs.values()
               if e["DTSTART"].dt == dt.date(2024, 3, 13))
    assert "1/4" in str(sq1["DESCRIPTION"])
    d.stop()


def test_calendar_token(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port, extra_daemon="calendar_token = s3cret-cal")
    d = start(daemon_factory, conf, port)
    assert d.get("/calendar.ics")[0] == 403
    assert d.get("/calendar.ics?token=wrong")[0] == 403
    assert d.get("/calendar.ics?token=s3cret-cal")[0] == 200
    d.stop()


def test_healthz_and_unknown(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port)
    st, _, body = d.get("/healthz")
    assert st == 200 and body.strip() == b"ok"
    assert d.get("/no/such/thing")[0] == 404
    assert http("PUT", d.base + "/calendar.ics", b"x")[0] in (404, 405)
    d.stop()


def test_reload_good_and_broken(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port)
    _, evs = events(d.get("/calendar.ics")[2])
    uid, ev = next((u, e) for u, e in evs.items()
                   if e["DTSTART"].dt == dt.date(2024, 3, 13))
    seq = int(ev["SEQUENCE"])
    # a good change: new title
    conf.write_text(conf.read_text().replace("title  = Báo cáo quý I",
                                             "title  = Báo cáo quý I/2024"))
    log = d.reload()
    assert "reloaded" in log
    _, evs2 = events(d.get("/calendar.ics")[2])
    assert uid in evs2
    assert str(evs2[uid]["SUMMARY"]).startswith("Báo cáo quý I/2024")
    assert int(evs2[uid]["SEQUENCE"]) > seq
    # a broken one is rejected, the old configuration keeps serving
    good = conf.read_text()
    conf.write_text(good.replace("at       = 08:00", "at       = 8 o'clock"))
    log = d.reload()
    assert "not reloading" in log
    line = next(i for i, l in enumerate(conf.read_text().splitlines(), 1)
                if l.startswith("at "))
    assert f"{conf}:{line}:" in log
    st, _, body = d.get("/calendar.ics")
    assert st == 200 and "Báo cáo quý I/2024" in body.decode()
    assert d.stop() == 0


def test_reload_serves_requests_throughout(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port)
    failures, done = [], threading.Event()

    def hammer():
        while not done.is_set():
            try:
                st, _, _ = d.get("/calendar.ics")
                if st != 200:
                    failures.append(st)
            except OSError as e:
                failures.append(str(e))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        for i in range(5):
            conf.write_text(conf.read_text().replace(
                "title  = Báo cáo quý III", f"title  = Báo cáo quý III ({i})"))
            d.reload()
    finally:
        done.set()
        t.join()
    assert failures == []
    d.stop()


def test_stop_is_clean_and_state_survives(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port)
    ctl(conf, "received", "mttq", "q1/2024-03-13", now=NOW)
    assert d.stop() == 0
    assert "stopped" in d.logtext()
    d2 = start(daemon_factory, conf, port)
    r = ctl(conf, "status", "q1/2024-03-13", now=NOW)
    assert any(l.startswith("mttq\tsubmitted") for l in r.stdout.splitlines())
    d2.signal(signal.SIGINT)
    assert d2.proc.wait(20) == 0


def test_simulated_clock_is_logged(daemon_factory, conf, port):
    d = start(daemon_factory, conf, port, now="2024-03-06T07:59", speed=60)
    assert "simulated" in d.logtext()
    d.stop()


def test_sd_notify(daemon_factory, conf, port, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(20)
    d = daemon_factory(conf, port, now=NOW, env={"NOTIFY_SOCKET": sock_path})
    d.start()
    msgs = []

    def expect(word):
        while True:
            m = s.recv(4096).decode()
            msgs.append(m)
            if word in m:
                return m

    assert "READY=1" in expect("READY=1")
    d.signal(signal.SIGHUP)
    m = expect("RELOADING=1")
    assert "MONOTONIC_USEC=" in m
    expect("READY=1")
    d.signal(signal.SIGTERM)
    expect("STOPPING=1")
    assert d.proc.wait(20) == 0
    assert any("STATUS=" in m for m in msgs)
    s.close()


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="no valgrind")
def test_valgrind_life_cycle(daemon_factory, conf, port, tmp_path):
    """start -> feeds -> sends -> reload -> stop under valgrind: no error,
    no leak."""
    vlog = tmp_path / "valgrind.log"
    # 10 s before the first reminders, at 10x: they go out during the run
    d = daemon_factory(conf, port, now="2024-03-06T07:59:50", speed=10, wrapper=[
        "valgrind", "--error-exitcode=99", "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
        f"--log-file={vlog}"])
    d.start(timeout=120)
    assert d.get("/calendar.ics")[0] == 200
    url = ctl(conf, "feed-url", "tu-phap").stdout.strip()
    assert d.get(url[len(d.base):])[0] == 200
    conf.write_text(conf.read_text().replace("Báo cáo quý I\n", "Báo cáo quý 1\n"))
    d.reload()
    conf.write_text(conf.read_text().replace("at       = 08:00", "at = x"))
    d.reload()
    assert d.get("/calendar.ics")[0] == 200
    new = tmp_path / "mail" / "new"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            new.is_dir() and len(list(new.iterdir())) >= 4):
        time.sleep(0.2)
    assert len(list(new.iterdir())) >= 4
    rc = d.stop(timeout=120)
    assert rc == 0, vlog.read_text()[-4000:]


def test_systemd_unit_exposure(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze")
    unit = tmp_path / "cutoffd.service"
    unit.write_text((ROOT / "systemd" / "cutoffd.service.in").read_text()
                    .replace("@SBINDIR@", "/usr/sbin"))
    r = subprocess.run(["systemd-analyze", "security", "--offline=true",
                        "--threshold=20", str(unit)],
                       capture_output=True, text=True)
    line = next(l for l in r.stdout.splitlines()
                if "Overall exposure level" in l)
    score = float(line.split(":")[1].split()[0])
    assert score <= 2.0, line
    r = subprocess.run(["systemd-analyze", "verify", str(unit)],
                       capture_output=True, text=True)
    assert "Unknown key" not in r.stderr and "Unknown lvalue" not in r.stderr, r.stderr
