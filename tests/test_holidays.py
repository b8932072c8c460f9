"""The holidays file: the shipped 2024-2026 data, Saturdays worked in
exchange (CATEGORIES:WORKDAY) moving deadlines end to end, and the warning
when the horizon runs past the last year the file covers."""
import datetime as dt
import subprocess
import time
from zoneinfo import ZoneInfo

import icalendar

from conftest import CUTOFFCTL, CUTOFFD, HOLIDAYS, ctl, make_config

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
TAIL = "END:VCALENDAR\r\n"


def event(uid, start, end=None, workday=False):
    s = (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
         f"DTSTART;VALUE=DATE:{start}\r\n")
    if end:
        s += f"DTEND;VALUE=DATE:{end}\r\n"
    if workday:
        s += "CATEGORIES:WORKDAY\r\n"
    return s + "END:VEVENT\r\n"


def with_holidays(tmp_path, port, text, **kw):
    (tmp_path / "hol.ics").write_text(text)
    conf = make_config(tmp_path, port, **kw)
    conf.write_text(conf.read_text().replace(f"holidays   = {HOLIDAYS}",
                                             "holidays   = hol.ics"))
    return conf


def check(conf):
    return subprocess.run([str(CUTOFFD), "--check", "-c", str(conf)],
                          capture_output=True, text=True, timeout=60)


def horizon_year(days=400):
    return (dt.datetime.now(ZONE) + dt.timedelta(days=days)).year


def test_shipped_file_names_its_sources_and_workdays():
    cal = icalendar.Calendar.from_ical(HOLIDAYS.read_bytes())
    events = list(cal.walk("VEVENT"))
    years = {e.decoded("DTSTART").year for e in events}
    assert years == {2024, 2025, 2026}
    for e in events:
        # every event says where its dates come from
        assert "Nguồn:" in str(e["DESCRIPTION"]), e["UID"]
    work = sorted(e.decoded("DTSTART") for e in events
                  if "WORKDAY" in e["CATEGORIES"].to_ical().decode())
    assert work == [dt.date(2024, 5, 4), dt.date(2025, 4, 26),
                    dt.date(2026, 1, 10), dt.date(2026, 8, 22)]
    assert all(d.weekday() == 5 for d in work)   # Saturdays
    off = set()
    for e in events:
        if "WORKDAY" in e["CATEGORIES"].to_ical().decode():
            continue
        d, end = e.decoded("DTSTART"), e.decoded("DTEND")
        while d < end:
            off.add(d)
            d += dt.timedelta(days=1)
    # the two days the 0.1 file lacked
    assert dt.date(2026, 1, 2) in off and dt.date(2026, 8, 31) in off


def test_check_warns_past_the_covered_years(tmp_path, port):
    conf = with_holidays(tmp_path, port,
                         HEAD + event("ny", "20200101") + TAIL)
    r = check(conf)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1          # the summary only
    want = (f"holidays file covers up to 2020; horizon reaches "
            f"{horizon_year()}: dates after 31/12/2020 assume no public "
            "holiday")
    assert want in r.stderr, r.stderr
    assert "hol.ics" in r.stderr
    # cutoffctl check says the same
    r = ctl(conf, "check")
    assert r.returncode == 0 and want in r.stderr, r.stderr
    # a file that reaches past the horizon: nothing to say
    conf = with_holidays(tmp_path, port,
                         HEAD + event("far", "21001231") + TAIL)
    r = check(conf)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_check_on_the_shipped_file(conf):
    r = check(conf)
    assert r.returncode == 0, r.stderr
    year = horizon_year()
    if year > 2026:
        assert (f"covers up to 2026; horizon reaches {year}: dates after "
                "31/12/2026 assume no public holiday") in r.stderr
    else:
        assert "covers up to" not in r.stderr


def test_startup_and_reload_warn_on_the_daemons_clock(daemon_factory,
                                                      tmp_path, port):
    conf = with_holidays(tmp_path, port,
                         HEAD + event("tet", "20260214", "20260223") + TAIL)
    # 2025-01-01 + 400 days is in 2026: covered
    d = daemon_factory(conf, port, now="2025-01-01T08:00").start()
    d.stop()
    assert "covers up to" not in d.logtext()
    # 2026-06-01 + 400 days is in 2027
    d = daemon_factory(conf, port, now="2026-06-01T08:00").start()
    want = ("covers up to 2026; horizon reaches 2027: dates after "
            "31/12/2026 assume no public holiday")
    assert want in d.logtext()
    assert d.logtext().count(want) == 1
    d.reload()
    assert d.logtext().count(want) == 2
    d.stop()


def test_workday_saturday_holds_a_deadline(tmp_path, port):
    cycles = """
[policy p]
at     = 08:00
remind = -1d 0d
shift  = next-workday

[cycle bu]
title  = Hạn vào thứ Bảy làm bù
due    = 2026-01-10
policy = p
units  = *

[cycle thuong]
title  = Hạn vào thứ Bảy thường
due    = 2026-01-17
policy = p
units  = *
"""
    units = "[unit tu-phap]\nname = Phòng Tư pháp\nemail = tuphap@example.vn\n"
    text = (HEAD + event("nghi", "20260101", "20260105") +
            event("bu", "20260110", workday=True) + TAIL)
    conf = with_holidays(tmp_path, port, text, cycles=cycles, units=units)
    r = ctl(conf, "plan", "--from", "2026-01-01", "--to", "2026-01-31")
    assert r.returncode == 0, r.stderr
    rows = sorted((f[1], f[3], f[0]) for f in
                  (l.split("\t") for l in r.stdout.splitlines()))
    assert rows == [
        # a worked Saturday: the deadline stays; its eve is a Friday
        ("bu/2026-01-10", "remind+0d", "2026-01-10T08:00"),
        ("bu/2026-01-10", "remind-1d", "2026-01-09T08:00"),
        # a plain Saturday: the deadline moves to Monday 19/01
        ("thuong/2026-01-17", "remind+0d", "2026-01-19T08:00"),
        # its eve, Sunday 18/01, is no send day: the Friday before
        ("thuong/2026-01-17", "remind-1d", "2026-01-16T08:00"),
    ], r.stdout
    # the same Saturday both off and worked is refused, at its line
    text = (HEAD + event("nghi", "20260101", "20260111") +
            event("bu", "20260110", workday=True) + TAIL)
    conf = with_holidays(tmp_path, port, text, cycles=cycles, units=units)
    r = check(conf)
    assert r.returncode == 1
    assert "hol.ics:11: 10/01/2026 is a WORKDAY and also a day off (line 5)" in \
        r.stderr, r.stderr
