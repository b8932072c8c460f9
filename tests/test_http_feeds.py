"""Feeds served without touching the state store: no write on a GET, and
SEQUENCE that still only grows across restarts and reloads."""
import sqlite3

from icalendar import Calendar

from conftest import ctl, http, init_state, make_config

NOW = "2024-03-20T10:00"
UNITS = ("ld-tbxh", "tu-phap", "mttq", "p-tan-loi")


def revisions(tmp_path):
    db = sqlite3.connect(f"file:{tmp_path / 'state.db'}?mode=ro", uri=True)
    try:
        return sorted(db.execute("SELECT kind, id, hash, seq, modified"
                                 " FROM rev").fetchall())
    finally:
        db.close()


def events(body):
    cal = Calendar.from_ical(body)
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_get_writes_nothing(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port)
    init_state(conf, port, now=NOW)
    urls = [ctl(conf, "feed-url", u).stdout.strip() for u in UNITS]
    d = daemon_factory(conf, port, now=NOW).start()
    before = revisions(tmp_path)
    for url in urls + [d.base + "/calendar.ics"]:
        st, _, body = http("GET", url)
        assert st == 200 and body.startswith(b"BEGIN:VCALENDAR")
    assert revisions(tmp_path) == before, "a GET wrote revisions"
    assert before, "start stores the revisions"
    # a conditional GET and a cache miss after invalidation (a reload)
    d.reload()
    after_reload = revisions(tmp_path)
    for url in urls + [d.base + "/calendar.ics"]:
        assert http("GET", url)[0] == 200
    assert revisions(tmp_path) == after_reload
    assert after_reload == before      # nothing changed in the config
    d.stop()


def test_sequence_across_restarts(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port)
    init_state(conf, port, now=NOW)
    url = ctl(conf, "feed-url", "tu-phap").stdout.strip()
    d = daemon_factory(conf, port, now=NOW).start()
    sec1 = events(http("GET", d.base + "/calendar.ics")[2])
    unit1 = events(http("GET", url)[2])
    d.stop()

    # the same configuration again: nothing goes back, nothing moves
    d = daemon_factory(conf, port, now=NOW).start()
    sec2 = events(http("GET", d.base + "/calendar.ics")[2])
    unit2 = events(http("GET", url)[2])
    d.stop()
    for a, b in ((sec1, sec2), (unit1, unit2)):
        assert a.keys() == b.keys()
        for uid in a:
            assert int(b[uid]["SEQUENCE"]) == int(a[uid]["SEQUENCE"]), uid

    # every cycle title changed while stopped: every event's SEQUENCE grows
    text = conf.read_text()
    assert "title" in text
    conf.write_text("\n".join(
        ln + " (sửa)" if ln.startswith("title") else ln
        for ln in text.splitlines()))
    d = daemon_factory(conf, port, now=NOW).start()
    sec3 = events(http("GET", d.base + "/calendar.ics")[2])
    unit3 = events(http("GET", url)[2])
    d.stop()
    for a, b in ((sec2, sec3), (unit2, unit3)):
        assert a.keys() == b.keys()
        for uid in a:
            assert int(b[uid]["SEQUENCE"]) > int(a[uid]["SEQUENCE"]), uid
