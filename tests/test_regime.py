"""The five source regimes (tests/regimes/, from the design's seeds) as a
secretariat configures them: their due dates and data periods for
2024-2026, read back from the running daemon's feed, `cutoffctl plan` and
`cutoffctl status`; and `since`, the first day a fresh install chases."""
import datetime as dt
import re
from pathlib import Path

import icalendar
import pytest

from conftest import ADMIN_TOKEN, CUTOFFD, ROOT, TEMPLATES, ctl

import subprocess

REGIMES = ROOT / "tests" / "regimes"


def compose(tmp, port, regime, extra_daemon=""):
    """The installation's [daemon] and [mail] around a regime file."""
    tmp = Path(tmp)
    (tmp / "admin.token").write_text(ADMIN_TOKEN + "\n")
    text = f"""[daemon]
timezone   = Asia/Ho_Chi_Minh
state      = state.db
listen     = 127.0.0.1:{port}
public_url = http://127.0.0.1:{port}
holidays   = {REGIMES / "holidays-vn.ics"}
templates  = {TEMPLATES}
workdays   = mon-fri
admin_token_file = admin.token
horizon    = 1100d
history    = 1d
{extra_daemon}
[mail]
transport = maildir
maildir   = {tmp}/mail
from      = Thường trực <thuongtruc@example.vn>

""" + (REGIMES / regime).read_text()
    path = tmp / "cutoffd.conf"
    path.write_text(text)
    return path


def D(s):
    return dt.date.fromisoformat(s)


# occurrence id -> (effective due date, period from, period to); the
# plans' own wording is quoted in each regime file
EXPECTED = {
    "city-bmt.conf": {
        "q1/2024-03-13": ("2024-03-13", "2023-12-15", "2024-03-13"),
        "h1/2024-06-13": ("2024-06-13", "2023-12-15", "2024-06-13"),
        "q3/2024-09-13": ("2024-09-13", "2024-06-13", "2024-09-13"),
        "y/2024-12-13": ("2024-12-13", "2023-12-15", "2024-12-13"),
        "q1/2025-03-13": ("2025-03-13", "2024-12-15", "2025-03-13"),
        "h1/2025-06-13": ("2025-06-13", "2024-12-15", "2025-06-13"),
        "q3/2025-09-13": ("2025-09-15", "2025-06-13", "2025-09-13"),
        "y/2025-12-13": ("2025-12-15", "2024-12-15", "2025-12-13"),
        "q1/2026-03-13": ("2026-03-13", "2025-12-15", "2026-03-13"),
        "h1/2026-06-13": ("2026-06-15", "2025-12-15", "2026-06-13"),
        "q3/2026-09-13": ("2026-09-14", "2026-06-13", "2026-09-13"),
        "y/2026-12-13": ("2026-12-14", "2025-12-15", "2026-12-13"),
    },
    "thap-muoi.conf": {
        "q1/2024-03-01": ("2024-03-01", "2023-12-15", "2024-03-14"),
        "h1/2024-06-01": ("2024-06-03", "2023-12-15", "2024-06-14"),
        # Sunday, then National Day 31/8-3/9
        "m9/2024-09-01": ("2024-09-04", "2023-12-15", "2024-09-14"),
        "y/2024-12-01": ("2024-12-02", "2023-12-15", "2024-12-14"),
        "q1/2025-03-01": ("2025-03-03", "2024-12-15", "2025-03-14"),
        "h1/2025-06-01": ("2025-06-02", "2024-12-15", "2025-06-14"),
        "m9/2025-09-01": ("2025-09-03", "2024-12-15", "2025-09-14"),
        "y/2025-12-01": ("2025-12-01", "2024-12-15", "2025-12-14"),
        "q1/2026-03-01": ("2026-03-02", "2025-12-15", "2026-03-14"),
        "h1/2026-06-01": ("2026-06-01", "2025-12-15", "2026-06-14"),
        "m9/2026-09-01": ("2026-09-03", "2025-12-15", "2026-09-14"),
        "y/2026-12-01": ("2026-12-01", "2025-12-15", "2026-12-14"),
    },
    "bac-giang-gddt.conf": {
        "bc/2024-06-15": ("2024-06-17", None, None),
        "bc/2024-11-15": ("2024-11-15", None, None),
        "bc/2025-06-15": ("2025-06-16", None, None),
        "bc/2025-11-15": ("2025-11-17", None, None),
        "bc/2026-06-15": ("2026-06-15", None, None),
        "bc/2026-11-15": ("2026-11-16", None, None),
    },
    # a one-off of 2023: nothing to chase in 2024-2026
    "go-vap.conf": {},
}


def vn(s):
    return D(s).strftime("%d/%m/%Y")


def feed_events(d):
    st, _, body = d.get("/calendar.ics")
    assert st == 200, body
    cal = icalendar.Calendar.from_ical(body)
    out = {}
    for e in cal.walk("VEVENT"):
        uid = str(e["UID"]).split("@")[0]
        # "q1-2024-03-13" -> "q1/2024-03-13"
        occ = uid[:-11] + "/" + uid[-10:]
        start = e["DTSTART"].dt
        day = start.date() if isinstance(start, dt.datetime) else start
        out[occ] = (day, str(e.get("DESCRIPTION", "")))
    return out


@pytest.mark.parametrize("regime", sorted(EXPECTED))
def test_regime_dates_and_periods(daemon_factory, tmp_path, port, regime):
    conf = compose(tmp_path, port, regime)
    want = EXPECTED[regime]
    # a fresh install started on 02/01/2024: since defaults to that day
    d = daemon_factory(conf, port, now="2024-01-02T09:00").start()
    evs = feed_events(d)
    got = {k: v for k, v in evs.items()
           if D("2024-01-01") <= v[0] <= D("2026-12-31")}
    assert sorted(got) == sorted(want)
    # nothing before the first start is listed (2023's y/2023-12-13 would
    # be "quá hạn" at once)
    assert all(v[0] >= D("2024-01-02") for v in evs.values()), evs
    for occ, (due, pf, pt) in want.items():
        day, desc = got[occ]
        assert day == D(due), occ
        if pf is None:
            assert "Số liệu" not in desc, (occ, desc)
        else:
            assert f"Số liệu từ {vn(pf)} đến {vn(pt)}" in desc, (occ, desc)

    # the plan: every occurrence of 2024-2026 and its due-day reminder
    r = ctl(conf, "plan", "--from", "2024-01-02", "--to", "2026-12-31",
            now="2024-01-02T09:00")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert {row[1] for row in rows} == set(want)
    for occ, (due, _, _) in want.items():
        zero = [row for row in rows if row[1] == occ and row[3] == "remind+0d"]
        assert zero, occ
        assert all(row[0].startswith(due + "T") for row in zero), (occ, zero)
    # no notice is planned on a day off (send_days = workdays)
    holidays = icalendar.Calendar.from_ical(
        (REGIMES / "holidays-vn.ics").read_bytes())
    off = set()
    for e in holidays.walk("VEVENT"):
        a, b = e["DTSTART"].dt, e["DTEND"].dt
        while a < b:
            off.add(a)
            a += dt.timedelta(days=1)
    for row in rows:
        day = D(row[0][:10])
        assert day.weekday() < 5 and day not in off, row

    # status names each occurrence's effective due date
    for occ, (due, _, _) in list(want.items())[:3]:
        r = ctl(conf, "status", occ, now="2024-01-02T09:00")
        assert r.returncode == 0, r.stderr
        assert occ in r.stdout and vn(due) in r.stdout, r.stdout
    d.stop()


def test_one_off_plan_has_no_half_period(daemon_factory, tmp_path, port):
    """Gò Vấp's plan by 15/8/2023, chased from 01/08/2023."""
    conf = compose(tmp_path, port, "go-vap.conf",
                   extra_daemon="since = 2023-08-01\n")
    d = daemon_factory(conf, port, now="2023-08-01T09:00").start()
    evs = feed_events(d)
    assert list(evs) == ["ke-hoach/2023-08-15"]
    day, desc = evs["ke-hoach/2023-08-15"]
    assert day == D("2023-08-15")
    assert "Số liệu" not in desc and "đến ngày" not in desc, desc
    d.stop()
    r = ctl(conf, "plan", "--from", "2023-08-01", "--to", "2023-09-30",
            "--unit", "p-11", now="2023-08-01T09:00")
    assert r.returncode == 0, r.stderr
    got = [(row.split("\t")[0], row.split("\t")[3])
           for row in r.stdout.splitlines()]
    # -3d is Saturday 12/08: on Friday 11/08; +3d Friday 18/08
    assert got == [("2023-08-08T08:00", "remind-7d"),
                   ("2023-08-11T08:00", "remind-3d"),
                   ("2023-08-14T08:00", "remind-1d"),
                   ("2023-08-15T08:00", "remind+0d"),
                   ("2023-08-16T08:00", "escalate+1d"),
                   ("2023-08-18T08:00", "escalate+3d")], r.stdout


def test_letter_without_date_is_refused(tmp_path, port):
    """Quận 7's letter sets no date: FILE:LINE, nothing guessed."""
    conf = compose(tmp_path, port, "quan7-gddt.conf")
    r = subprocess.run([str(CUTOFFD), "-c", str(conf), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    lines = conf.read_text().splitlines()
    n = next(i for i, s in enumerate(lines, 1) if s == "[cycle ke-hoach]")
    assert f"{conf}:{n}: cycle 'ke-hoach' needs due = or rrule =" in r.stderr
    # with the date the secretariat sets, the same regime loads
    conf.write_text(conf.read_text().replace(
        "[cycle ke-hoach]\n", "[cycle ke-hoach]\ndue = 2024-05-15\n"))
    r = subprocess.run([str(CUTOFFD), "-c", str(conf), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "2 units, 1 cycle" in r.stdout


def test_fresh_install_chases_nothing_before_its_start(daemon_factory,
                                                       tmp_path, port):
    """Started on 02/01/2024: no escalation for y/2023-12-13 on 04/01,
    07/01 or 10/01, and no 2022-2023 occurrence in status or JSON."""
    conf = compose(tmp_path, port, "city-bmt.conf")
    conf.write_text(conf.read_text().replace("history    = 1d",
                                             "history    = 800d"))
    d = daemon_factory(conf, port, now="2024-01-02T09:00").start()
    st, _, body = d.get("/status.json")
    assert st == 200
    assert b"y/2023-12-13" not in body and b"q1/2023-03-13" not in body
    assert b"y/2022-12-13" not in body
    d.stop()
    r = ctl(conf, "plan", "--from", "2024-01-02", "--to", "2024-01-31",
            now="2024-01-02T09:00")
    assert r.returncode == 0, r.stderr
    assert "y/2023-12-13" not in r.stdout
    r = ctl(conf, "status", now="2024-01-02T09:00")
    assert r.returncode == 0, r.stderr
    assert "2023-" not in r.stdout and "2022-" not in r.stdout, r.stdout
    # since in the file overrides the store's first day
    conf.write_text(conf.read_text().replace(
        "history    = 800d", "history    = 800d\nsince = 2023-12-01"))
    r = ctl(conf, "plan", "--from", "2024-01-02", "--to", "2024-01-31",
            now="2024-01-02T09:00")
    assert "y/2023-12-13\ttu-phap\trepeat+22d" in r.stdout, r.stdout


def test_rrule_without_start_counts_from_since(tmp_path, port):
    conf = compose(tmp_path, port, "city-bmt.conf",
                   extra_daemon="since = 2024-03-05\n")
    text = conf.read_text() + """
[cycle thang]
title = Báo cáo tháng
rrule = FREQ=MONTHLY;BYMONTHDAY=20
period = month
"""
    conf.write_text(text)
    r = ctl(conf, "check")
    assert r.returncode == 0, r.stderr
    r = ctl(conf, "plan", "--from", "2024-03-01", "--to", "2024-04-30",
            "--unit", "tu-phap", now="2024-03-01T09:00")
    assert r.returncode == 0, r.stderr
    occs = sorted({row.split("\t")[1] for row in r.stdout.splitlines()
                   if row.split("\t")[1].startswith("thang/")})
    assert occs[:2] == ["thang/2024-03-20", "thang/2024-04-20"], r.stdout
    # INTERVAL needs start, with FILE:LINE
    conf.write_text(text.replace("BYMONTHDAY=20", "INTERVAL=2;BYMONTHDAY=20"))
    r = ctl(conf, "check")
    assert r.returncode == 1
    n = next(i for i, s in enumerate(conf.read_text().splitlines(), 1)
             if s.startswith("rrule ="))
    assert re.search(rf"cutoffd.conf:{n}: rrule: needs start", r.stderr), \
        r.stderr
