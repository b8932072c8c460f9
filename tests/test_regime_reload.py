"""Moving a due date by a reload keeps what was recorded (submissions, sent
notices, the old id), and quiet hours hold for notices caught up late."""
import email
import email.policy
import email.utils
import json
import subprocess
import time
from pathlib import Path

from conftest import ADMIN_TOKEN, CUTOFFD, ctl, http, make_config

AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN,
        "Content-Type": "application/json"}


def mails(tmp):
    out = []
    new = Path(tmp) / "mail" / "new"
    for f in sorted(new.glob("*")) if new.is_dir() else []:
        m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        out.append(m)
    return out


def step_of(m):
    return str(m["Message-ID"])


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_moved_due_date_keeps_state(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port)
    # Friday 08/03/2024: -3d of q1/2024-03-13 (Sunday 10/03) goes out now
    d = daemon_factory(conf, port, now="2024-03-08T07:59:50",
                       speed=30000).start()
    first = wait_for(lambda: len(mails(tmp_path)) >= 4 and mails(tmp_path),
                     what="the -3d reminders")
    assert len(first) == 4
    assert all("remind-3d" in step_of(m) for m in first), \
        [step_of(m) for m in first]
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13",
            "--at", "2024-03-08T09:00", now="2024-03-08T10:00")
    assert r.returncode == 0, r.stderr

    # the secretariat moves the deadline to Friday 15/03
    text = conf.read_text()
    assert "due    = 03-13" in text
    conf.write_text(text.replace("due    = 03-13", "due    = 03-15"))
    r = subprocess.run([str(CUTOFFD), "-c", str(conf), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "q1/2024-03-13 moves to q1/2024-03-15" in r.stdout, r.stdout
    r = ctl(conf, "check")
    assert r.returncode == 0, r.stderr
    assert "q1/2024-03-13 moves to q1/2024-03-15: 1 submissions and 4 sent" \
        in r.stdout, r.stdout
    log = d.reload()
    assert "q1/2024-03-13 moves to q1/2024-03-15" in log, log

    # the submission went with it; the old id still resolves
    r = ctl(conf, "status", "q1/2024-03-13", now="2024-03-08T12:00")
    assert r.returncode == 0, r.stderr
    assert "q1/2024-03-15" in r.stdout, r.stdout
    assert any(l.startswith("tu-phap\tsubmitted")
               for l in r.stdout.splitlines()), r.stdout

    # -3d of the new date (Tuesday 12/03) is already sent; -1d (Thursday
    # 14/03) goes to the three units that have not reported
    def one_day():
        ms = [m for m in mails(tmp_path) if "remind-1d" in step_of(m)]
        return len(ms) >= 3 and ms
    later = wait_for(one_day, what="the -1d reminders")
    time.sleep(0.3)
    all_mails = mails(tmp_path)
    three = [m for m in all_mails if "remind-3d" in step_of(m)]
    assert len(three) == 4, [step_of(m) for m in all_mails]
    to_tp = [m for m in all_mails if "tuphap@example.vn" in str(m["To"])]
    assert len(to_tp) == 1, [step_of(m) for m in to_tp]
    assert sorted(str(m["To"]) for m in later) == [
        "bcd.tanloi@example.vn", "ldtbxh@example.vn", "mttq@example.vn"]
    assert all("q1" in step_of(m) and "2024-03-15" in step_of(m)
               for m in later), [step_of(m) for m in later]

    # the API takes the old id too
    st, _, body = http("POST", d.base + "/api/submissions", json.dumps(
        {"unit": "mttq", "occurrence": "q1/2024-03-13"}).encode(), AUTH)
    assert st == 201, body
    occ = next(o for o in json.loads(d.get("/status.json")[2])["occurrences"]
               if o["id"] == "q1/2024-03-15")
    assert occ["submitted"] == 2
    st, _, body = http("GET", d.base + "/api/submissions?occurrence="
                       "q1/2024-03-13", None, AUTH)
    assert st == 200, body
    assert sorted(x["unit"] for x in json.loads(body)["submissions"]) == \
        ["mttq", "tu-phap"], body
    d.stop()


def test_quiet_holds_for_caught_up_notice(daemon_factory, tmp_path, port):
    """The daemon was down over the due day: at 19:00 the missed 0d
    reminder waits for the end of quiet (07:30), it does not go out at
    once saying "đã quá hạn 1 ngày" in the evening."""
    cycles = """
[policy p]
at       = 08:00
remind   = -1d 0d
quiet    = 18:00-07:30

[cycle h1]
title  = Báo cáo sơ kết 6 tháng
due    = 06-01
policy = p
units  = *
"""
    conf = make_config(tmp_path, port, cycles=cycles)
    d = daemon_factory(conf, port, now="2024-06-01T10:00").start()
    d.stop()
    assert mails(tmp_path) == []
    # h1/2024-06-01 (Saturday) is due Monday 03/06; back on 04/06 19:00
    d = daemon_factory(conf, port, now="2024-06-04T19:00", speed=7200).start()
    got = wait_for(lambda: len(mails(tmp_path)) >= 4 and mails(tmp_path),
                   what="the caught-up reminders")
    d.stop()
    for m in got:
        assert "remind+0d" in step_of(m), step_of(m)
        sent = email.utils.parsedate_to_datetime(str(m["Date"]))
        local = sent.astimezone(
            __import__("datetime").timezone(__import__("datetime")
                                            .timedelta(hours=7)))
        assert local.strftime("%Y-%m-%d") == "2024-06-05", local
        assert "07:30" <= local.strftime("%H:%M") < "18:00", local
