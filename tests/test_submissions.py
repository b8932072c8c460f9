"""Submissions: the HTTP API with every bad input, their effect on status,
feeds and plan, and the status page in real headless Chromium."""
import datetime as dt
import json
import shutil
import time
from pathlib import Path

import icalendar
import pytest

from conftest import ADMIN_TOKEN, ROOT, ctl, http

NOW = "2024-03-20T10:00"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": "application/json"}
ARTIFACTS = ROOT / "build" / "artifacts"


@pytest.fixture
def d(daemon_factory, conf, port):
    dm = daemon_factory(conf, port, now=NOW).start()
    yield dm
    dm.stop()


def post(d, obj=None, raw=None, headers=AUTH):
    body = raw if raw is not None else json.dumps(obj).encode()
    return http("POST", d.base + "/api/submissions", body, headers)


def test_api_record_and_delete(d, conf):
    st, _, body = post(d, {"unit": "tu-phap", "occurrence": "q1/2024-03-13",
                           "at": "2024-03-12T15:30", "note": "Đã nhận bản giấy"})
    assert st == 201, body
    rec = json.loads(body)
    assert rec["unit"] == "tu-phap"
    # at once in the status JSON
    st, _, body = d.get("/status.json")
    occ = next(o for o in json.loads(body)["occurrences"]
               if o["id"] == "q1/2024-03-13")
    assert occ["submitted"] == 1 and occ["total"] == 4
    u = next(x for x in occ["units"] if x["unit"] == "tu-phap")
    assert u["state"] == "submitted" and not u.get("late")
    # and in the CLI and the plan
    r = ctl(conf, "status", "q1/2024-03-13", now=NOW)
    assert any(l.startswith("tu-phap\tsubmitted") for l in r.stdout.splitlines())
    r = ctl(conf, "plan", "--from", "2024-03-01", "--to", "2024-04-30",
            "--unit", "tu-phap")
    assert "q1/2024-03-13" not in r.stdout
    # a second record is a conflict
    st, _, _ = post(d, {"unit": "tu-phap", "occurrence": "q1/2024-03-13"})
    assert st == 409
    # late submission flagged
    st, _, _ = post(d, {"unit": "mttq", "occurrence": "q1/2024-03-13",
                        "at": "2024-03-15T08:00"})
    assert st == 201
    occ = next(o for o in json.loads(d.get("/status.json")[2])["occurrences"]
               if o["id"] == "q1/2024-03-13")
    assert next(x for x in occ["units"] if x["unit"] == "mttq")["late"] is True
    # delete
    st, _, _ = http("DELETE", d.base + "/api/submissions/q1/2024-03-13/tu-phap",
                    headers=AUTH)
    assert st in (200, 204)
    st, _, _ = http("DELETE", d.base + "/api/submissions/q1/2024-03-13/tu-phap",
                    headers=AUTH)
    assert st == 404
    r = ctl(conf, "status", "q1/2024-03-13", now=NOW)
    assert any(l.startswith("tu-phap\tmissing") for l in r.stdout.splitlines())


@pytest.mark.parametrize("case,expect", [
    ("no-auth", 401), ("bad-token", 401), ("bad-json", 400), ("array", 400),
    ("dup-key", 400), ("unknown-key", 400), ("unknown-unit", 400),
    ("unknown-occ", 400), ("bad-date", 400), ("not-string", 400),
    ("big-note", 400), ("wrong-type", 415), ("huge", 413),
])
def test_api_rejects_bad_input(d, case, expect):
    good = {"unit": "tu-phap", "occurrence": "q1/2024-03-13"}
    headers, raw, obj = AUTH, None, dict(good)
    if case == "no-auth":
        headers = {"Content-Type": "application/json"}
    elif case == "bad-token":
        headers = dict(AUTH, Authorization="Bearer nope-nope-nope-nope")
    elif case == "bad-json":
        raw = b'{"unit": "tu-phap",'
    elif case == "array":
        raw = b'["tu-phap"]'
    elif case == "dup-key":
        raw = b'{"unit":"tu-phap","unit":"mttq","occurrence":"q1/2024-03-13"}'
    elif case == "unknown-key":
        obj["extra"] = 1
    elif case == "unknown-unit":
        obj["unit"] = "ghost"
    elif case == "unknown-occ":
        obj["occurrence"] = "q1/2024-03-14"
    elif case == "bad-date":
        obj["at"] = "13/03/2024"
    elif case == "not-string":
        obj["unit"] = 5
    elif case == "big-note":
        obj["note"] = "x" * 5000
    elif case == "wrong-type":
        headers = dict(AUTH, **{"Content-Type": "text/plain"})
    elif case == "huge":
        raw = b'{"note":"' + b"x" * 200000 + b'"}'
    st, _, body = post(d, obj, raw=raw, headers=headers)
    assert st == expect, (case, st, body)
    # nothing got recorded
    occ = next(o for o in json.loads(d.get("/status.json")[2])["occurrences"]
               if o["id"] == "q1/2024-03-13")
    assert occ["submitted"] == 0


def test_feeds_reflect_api_submission(d, conf):
    assert post(d, {"unit": "mttq", "occurrence": "q1/2024-03-13"})[0] == 201
    cal = icalendar.Calendar.from_ical(d.get("/calendar.ics")[2])
    ev = next(e for e in cal.walk("VEVENT")
              if e["DTSTART"].dt == dt.date(2024, 3, 13))
    desc = str(ev["DESCRIPTION"])
    assert "1/4" in desc
    url = ctl(conf, "feed-url", "mttq").stdout.strip()
    ucal = icalendar.Calendar.from_ical(d.get(url[len(d.base):])[2])
    uev = next(e for e in ucal.walk("VEVENT")
               if e["DTSTART"].dt == dt.date(2024, 3, 13))
    assert not uev.walk("VALARM")


def chromium_driver():
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    if not shutil.which("chromedriver") or not (
            shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        pytest.skip("chromium/chromedriver not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync",
              "--window-size=1280,1400"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")),
                            options=opts)


def test_status_page_in_chromium(d, conf):
    from selenium.webdriver.common.by import By
    assert post(d, {"unit": "tu-phap", "occurrence": "q1/2024-03-13",
                    "at": "2024-03-12T09:00"})[0] == 201
    drv = chromium_driver()
    try:
        drv.get(d.base + "/")
        text = drv.find_element(By.TAG_NAME, "body").text
        assert "Phòng Tư pháp" in text
        assert "Đúng hạn" in text and "Chưa nộp" in text
        assert "13/03/2024" in text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(ARTIFACTS / "status-page.png"))
        # mark mttq from the page: log in, then press its button
        from selenium.webdriver.support.ui import WebDriverWait
        drv.find_element(By.NAME, "token").send_keys(ADMIN_TOKEN)
        drv.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        # the click navigates: wait for the logged-in page
        WebDriverWait(drv, 20).until(lambda x: x.find_elements(
            By.CSS_SELECTOR, "form[action='/logout']"))
        forms = drv.find_elements(By.CSS_SELECTOR, "form[action='/mark']")
        target = next(f for f in forms
                      if f.find_element(By.NAME, "unit").get_attribute("value") == "mttq"
                      and f.find_element(By.NAME, "occurrence").get_attribute("value")
                      == "q1/2024-03-13")
        button = target.find_element(By.TAG_NAME, "button")
        button.click()
        # the POST redirects back to the page: the old form goes stale
        from selenium.webdriver.support import expected_conditions as EC
        WebDriverWait(drv, 20).until(EC.staleness_of(button))
        WebDriverWait(drv, 20).until(lambda x: x.find_elements(
            By.CSS_SELECTOR, "form[action='/logout']"))
        drv.save_screenshot(str(ARTIFACTS / "status-page-marked.png"))
    finally:
        drv.quit()
    r = ctl(conf, "status", "q1/2024-03-13", now=NOW)
    line = next(l for l in r.stdout.splitlines() if l.startswith("mttq\t"))
    assert line.split("\t")[1] == "submitted"


def test_mark_without_csrf_is_refused(d):
    # a cross-site form post carries no session and no CSRF token
    st, _, _ = http("POST", d.base + "/mark",
                    b"occurrence=q1%2F2024-03-13&unit=mttq",
                    {"Content-Type": "application/x-www-form-urlencoded"})
    assert st in (401, 403)
    occ = next(o for o in json.loads(d.get("/status.json")[2])["occurrences"]
               if o["id"] == "q1/2024-03-13")
    assert occ["submitted"] == 0


def test_page_stays_bounded_with_many_units(daemon_factory, tmp_path, port):
    """Hundreds of units: exact counts, a bounded list, the filter shows
    all of a group."""
    from conftest import make_config
    units = "".join(f"\n[unit x{i:03d}]\nname = Ban Chỉ đạo xã {i}\n"
                    f"email = x{i:03d}@example.vn\ngroups = g{i % 2}\n"
                    for i in range(700))
    conf = make_config(tmp_path, port, units=units)
    dm = daemon_factory(conf, port, now=NOW).start()
    try:
        st, _, body = dm.get("/")
        page = body.decode()
        assert st == 200
        q1 = page.split('id="o-q1-2024-03-13"')[1].split("</section>")[0]
        assert "Chưa nộp: 700" in q1
        assert q1.count("Chưa nộp</td>") == 300
        assert "và 400 đơn vị khác" in q1
        st, _, body = dm.get("/?group=g1")
        q1 = body.decode().split('id="o-q1-2024-03-13"')[1].split("</section>")[0]
        assert q1.count("Chưa nộp</td>") == 300 and "và 50 đơn vị khác" in q1
        # the JSON stays complete
        occ = next(o for o in json.loads(dm.get("/status.json")[2])["occurrences"]
                   if o["id"] == "q1/2024-03-13")
        assert len(occ["units"]) == 700
    finally:
        dm.stop()
