"""The status page a secretariat leaves open, in real headless Chromium:
the order of the occurrences, titles with their year, group names, the days
left or past (on the injected clock), every state in words and symbols, the
admin's forms (mark, nil, undo, extend, cancel) through the real page with
their effect in /status.json and `cutoffctl history`, failed notices at the
top, and the page at 10,000 units.  Screenshots go to build/artifacts/."""
import datetime as dt
import json
import re
import time

import pytest

from conftest import (ADMIN_TOKEN, EXAMPLE, HOLIDAYS, ROOT, TEMPLATES, ctl,
                      http, init_state, make_config)
from test_notices import BEFORE, smtp, smtp_mail, wait_for  # noqa: F401
from test_submissions import chromium_driver

ARTIFACTS = ROOT / "build" / "artifacts"
NOW = "2024-06-20T10:00"
LAN = "lan-token-0123456789abcdef0123456789"


def example_conf(tmp, port, extra=""):
    """The shipped example, on a free port, with a named admin and
    `since = 2024-01-01` (the 2023 occurrences are before it)."""
    text = EXAMPLE.read_text()
    text = re.sub(r"(?m)^state\s*=.*$", "state = state.db\n"
                  "since = 2024-01-01\nadmin_token_file = admin.token\n"
                  f"templates = {TEMPLATES}", text)
    text = re.sub(r"(?m)^listen\s*=.*$", f"listen = 127.0.0.1:{port}", text)
    text = re.sub(r"(?m)^public_url\s*=.*$",
                  f"public_url = http://127.0.0.1:{port}", text)
    text = re.sub(r"(?m)^holidays\s*=.*$", f"holidays = {HOLIDAYS}", text)
    text = re.sub(r"(?m)^maildir\s*=.*$", f"maildir = {tmp}/mail", text)
    text += ("\n[admin lan]\nname = Nguyễn Thị Lan\ntoken_file = lan.token\n"
             + extra)
    (tmp / "admin.token").write_text(ADMIN_TOKEN + "\n")
    (tmp / "lan.token").write_text(LAN + "\n")
    path = tmp / "city.conf"
    path.write_text(text)
    return path


def days(a, b):
    return (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days


def overview(drv):
    """[(label, time left)] of the overview table, top to bottom."""
    from selenium.webdriver.common.by import By
    out = []
    for tr in drv.find_elements(By.CSS_SELECTOR,
                                  "body > table:first-of-type tbody tr"):
        td = tr.find_elements(By.TAG_NAME, "td")
        out.append((td[0].text, td[2].text))
    return out


def status_json(d):
    st, _, body = d.get("/status.json")
    assert st == 200
    return json.loads(body)


def occ_json(d, occ):
    return next(o for o in status_json(d)["occurrences"] if o["id"] == occ)


def unit_json(d, occ, unit):
    return next(u for u in occ_json(d, occ)["units"] if u["unit"] == unit)


def history(conf, unit=None, occ=None):
    args = ["history"]
    if unit:
        args += ["--unit", unit]
    if occ:
        args += ["--occurrence", occ]
    r = ctl(conf, *args)
    assert r.returncode == 0, r.stderr
    return [l.split("\t") for l in r.stdout.splitlines()]


def shot(drv, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # the whole page, not only the window
    h = drv.execute_script("return document.body.scrollHeight")
    drv.set_window_size(1280, min(max(h + 100, 900), 6000))
    drv.execute_script("window.scrollTo(0, 0)")
    drv.save_screenshot(str(ARTIFACTS / name))
    drv.set_window_size(1280, 1400)


def test_order_labels_days_and_groups(daemon_factory, tmp_path, port):
    conf = example_conf(tmp_path, port)
    d = daemon_factory(conf, port, now=NOW).start()
    drv = chromium_driver()
    try:
        from selenium.webdriver.common.by import By
        drv.get(d.base + "/")
        rows = overview(drv)
        today = NOW[:10]
        # what is chased now first, then what comes, soonest first; the
        # past after; nothing due before since (2024-01-01)
        assert rows == [
            ("Báo cáo sơ kết 6 tháng đầu năm 2024",
             f"quá hạn {days('2024-06-13', today)} ngày"),
            ("Báo cáo quý III/2024", f"còn {days(today, '2024-09-13')} ngày"),
            ("Báo cáo tổng kết năm 2024",
             f"còn {days(today, '2024-12-13')} ngày"),
            ("Báo cáo quý I/2025", f"còn {days(today, '2025-03-13')} ngày"),
            ("Báo cáo sơ kết 6 tháng đầu năm 2025",
             f"còn {days(today, '2025-06-13')} ngày"),
            ("Báo cáo quý I/2024",
             f"quá hạn {days('2024-03-13', today)} ngày"),
        ]
        assert rows[0][1] == "quá hạn 7 ngày" and rows[-1][1] == \
            "quá hạn 99 ngày"
        # the sections below in the same order, each title with its year
        ids = [s.get_attribute("id") for s in
               drv.find_elements(By.CSS_SELECTOR, "section[id^='o-']")]
        assert ids == ["o-h1-2024-06-13", "o-q3-2024-09-13", "o-y-2024-12-13",
                       "o-q1-2025-03-13", "o-h1-2025-06-13",
                       "o-q1-2024-03-13"]
        assert "y/2023-12-13" not in drv.page_source
        h2 = [e.text for e in drv.find_elements(By.CSS_SELECTOR,
                                                 "section[id^='o-'] h2")]
        assert h2[:3] == ["Báo cáo sơ kết 6 tháng đầu năm 2024",
                          "Báo cáo quý III/2024", "Báo cáo tổng kết năm 2024"]
        # the groups by their names
        opts = [o.text for o in drv.find_elements(
            By.CSS_SELECTOR, "select[name='group'] option")]
        assert opts == ["Tất cả", "Mặt trận và đoàn thể",
                        "Phòng, ban chuyên môn", "Phường, xã",
                        "Khối nội chính"]
        # per unit: state in words and symbol, and its own count
        sec = drv.find_element(By.ID, "o-h1-2024-06-13")
        assert "✗ Chưa nộp" in sec.text and "quá hạn 7 ngày" in sec.text
        sec = drv.find_element(By.ID, "o-q3-2024-09-13")
        assert "… Chưa đến hạn" in sec.text and "còn 85 ngày" in sec.text
        shot(drv, "page-example.png")
    finally:
        drv.quit()
        d.stop()
    # on the due day: "hạn hôm nay"; the day after, one day late
    d = daemon_factory(conf, port, now="2024-09-13T10:00").start()
    page = d.get("/")[2].decode()
    row = page.split('href="#o-q3-2024-09-13"')[1].split("</tr>")[0]
    assert "hạn hôm nay" in row
    d.stop()
    d = daemon_factory(conf, port, now="2024-09-14T09:00").start()
    page = d.get("/")[2].decode()
    row = page.split('href="#o-q3-2024-09-13"')[1].split("</tr>")[0]
    assert "quá hạn 1 ngày" in row
    d.stop()


def login(drv, base, token):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    drv.get(base + "/")
    drv.find_element(By.CSS_SELECTOR,
                     "form[action='/login'] input[name='token']").send_keys(token)
    drv.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    WebDriverWait(drv, 20).until(lambda x: x.find_elements(
        By.CSS_SELECTOR, "form[action='/logout']"))
    # the login lands on / (auth.c); the view to work in
    drv.get(base + "/?group=phong-ban")


def find_form(drv, action, occ, unit=None, cancel=False):
    from selenium.webdriver.common.by import By
    for f in drv.find_elements(By.CSS_SELECTOR, f"form[action='{action}']"):
        fields = {i.get_attribute("name"): i.get_attribute("value")
                  for i in f.find_elements(By.CSS_SELECTOR,
                                           "input[type='hidden']")}
        if fields.get("occurrence") == occ and fields.get("unit") == unit \
                and ("cancel" in fields) == cancel:
            return f
    raise AssertionError(f"no {action} form for {occ} {unit}")


def submit(drv, form, button_text=None):
    """Presses the form's button (opening its <details> first) and waits
    for the page the 303 leads back to."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    det = form.find_elements(By.XPATH, "./ancestor::details[@class='act']")
    if det and det[0].get_attribute("open") is None:
        det[0].find_element(By.TAG_NAME, "summary").click()
    buttons = form.find_elements(By.TAG_NAME, "button")
    b = next(x for x in buttons if button_text is None or
             x.text == button_text)
    b.click()
    WebDriverWait(drv, 20).until(EC.staleness_of(b))
    WebDriverWait(drv, 20).until(lambda x: x.find_elements(
        By.CSS_SELECTOR, "form[action='/logout']"))


def test_admin_actions_through_the_page(daemon_factory, tmp_path, port):
    from selenium.webdriver.common.by import By
    conf = example_conf(tmp_path, port)
    d = daemon_factory(conf, port, now=NOW).start()
    h1, q3 = "h1/2024-06-13", "q3/2024-09-13"
    drv = chromium_driver()
    try:
        login(drv, d.base, LAN)
        assert "Nguyễn Thị Lan" in drv.find_element(By.TAG_NAME, "body").text

        # received, in a filtered view: back to it, at the occurrence
        submit(drv, find_form(drv, "/mark", h1, "tu-phap"), "Ghi nhận đã nộp")
        assert drv.current_url.endswith("/?group=phong-ban#o-h1-2024-06-13")
        assert unit_json(d, h1, "tu-phap")["state"] == "submitted"
        assert unit_json(d, h1, "tu-phap")["source"] == "page"
        row = find_form(drv, "/undo", h1, "tu-phap").find_element(
            By.XPATH, "./ancestor::tr").text
        assert "✓ Đúng hạn" not in row and "⚠ Nộp muộn" in row
        # undo
        submit(drv, find_form(drv, "/undo", h1, "tu-phap"), "Hủy ghi nhận")
        assert unit_json(d, h1, "tu-phap")["state"] == "missing"
        # extend one unit of q3, with a note
        f = find_form(drv, "/extend", q3, "gd-dt")
        submit_date = f.find_element(By.NAME, "due")
        drv.execute_script("arguments[0].closest('details').open = true;"
                           "arguments[0].value = '2024-09-30'", submit_date)
        f.find_element(By.NAME, "note").send_keys("Xin gia hạn do lũ")
        submit(drv, f, "Gia hạn")
        u = unit_json(d, q3, "gd-dt")
        assert u["due_date"] == "30/09/2024" and u["extended"] is True
        sec = drv.find_element(By.ID, "o-q3-2024-09-13").text
        assert "gia hạn đến 30/09/2024" in sec
        assert f"còn {days(NOW[:10], '2024-09-30')} ngày" in sec
        # everyone's h1 extended to 28/06: it is not due yet any more
        f = find_form(drv, "/extend", h1, None)
        drv.execute_script("arguments[0].closest('details').open = true;"
                           "arguments[0].value = '2024-06-28'",
                           f.find_element(By.NAME, "due"))
        submit(drv, f, "Gia hạn")
        o = occ_json(d, h1)
        assert o["extended"] is True and o["due_date"] == "28/06/2024"
        assert o["not_due"] == 11 and o["missing"] == 0
        assert overview(drv)[0] == ("Báo cáo sơ kết 6 tháng đầu năm 2024",
                                    "còn 8 ngày")
        sec = drv.find_element(By.ID, "o-h1-2024-06-13").text
        assert "gia hạn đến 28/06/2024 (hạn theo kế hoạch 13/06/2024)" in sec
        shot(drv, "page-example-admin.png")
        # a nil return, now on time
        submit(drv, find_form(drv, "/mark", h1, "vh-tt"), "Không phát sinh")
        assert unit_json(d, h1, "vh-tt")["state"] == "nil"
        row = find_form(drv, "/undo", h1, "vh-tt").find_element(
            By.XPATH, "./ancestor::tr").text
        assert "∅ Không phát sinh" in row
        # cancel the occurrence's extension
        submit(drv, find_form(drv, "/extend", h1, None, cancel=True),
               "Bỏ gia hạn")
        o = occ_json(d, h1)
        assert "extended" not in o and o["due_date"] == "13/06/2024"
        assert overview(drv)[0][1] == "quá hạn 7 ngày"
    finally:
        drv.quit()
    rows = history(conf)
    assert [(x[1], x[2], x[3], x[4], x[5]) for x in rows] == [
        (h1, "tu-phap", "received", "page", "lan"),
        (h1, "tu-phap", "undo", "page", "lan"),
        (q3, "gd-dt", "extend", "page", "lan"),
        (h1, "*", "extend", "page", "lan"),
        (h1, "vh-tt", "nil", "page", "lan"),
        (h1, "*", "extend", "page", "lan"),
    ]
    assert rows[2][6] == "until 2024-09-30" and rows[2][7] == \
        "Xin gia hạn do lũ"
    assert rows[5][6] == "cancelled"
    d.stop()


def post_form(d, path, fields, cookie=None):
    import http.client
    import urllib.parse
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = cookie
    c.request("POST", path, urllib.parse.urlencode(fields), headers)
    r = c.getresponse()
    out = (r.status, r.headers, r.read())
    c.close()
    return out


def test_forms_refuse_bad_input(daemon_factory, tmp_path, port):
    conf = example_conf(tmp_path, port)
    d = daemon_factory(conf, port, now=NOW).start()
    h1 = "h1/2024-06-13"
    # without a session or CSRF token: refused, nothing recorded
    for path in ("/undo", "/extend"):
        st, _, _ = post_form(d, path, {"occurrence": h1, "unit": "tu-phap",
                                       "due": "2024-06-30"})
        assert st in (401, 403), path
    st, hdr, _ = post_form(d, "/login", {"token": LAN})
    assert st == 303
    cookie = hdr["Set-Cookie"].split(";")[0]
    page = d.get("/", headers={"Cookie": cookie})[2].decode()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    base = {"occurrence": h1, "csrf": csrf}
    for fields, msg in [
            ({"due": "30/06/2024"}, "Ngày gia hạn không hợp lệ"),
            ({"due": "2024-06-01"}, "phải sau hạn theo kế hoạch"),
            ({"due": "2026-06-01"}, "trong vòng một năm"),
            ({"due": "2024-06-30", "unit": "nobody"}, "Không có kỳ báo cáo"),
            ({"due": "2024-06-30", "occurrence": "h1/2024-06-14"},
             "Không có kỳ báo cáo"),
            ({"due": "2024-06-30", "note": "a\x01b"}, "Ghi chú không hợp lệ")]:
        st, _, body = post_form(d, "/extend", dict(base, **fields), cookie)
        assert st == 400 and msg in body.decode(), (fields, body)
    st, _, body = post_form(d, "/undo", base, cookie)    # no unit
    assert st == 400
    # undo of nothing recorded: back to the page, nothing happened
    st, hdr, _ = post_form(d, "/undo", dict(base, unit="tu-phap"), cookie)
    assert st == 303 and hdr["Location"] == "/#o-h1-2024-06-13"
    assert history(conf) == []
    assert "extended" not in occ_json(d, h1)
    d.stop()


def test_failed_notices_summed_up_at_the_top(daemon_factory, tmp_path, port,
                                             smtp):
    sink = smtp(lambda m: "550 5.1.1 mailbox unknown"
                if "mttq" in str(m["To"]) else None)
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    init_state(conf, port, now=BEFORE)
    d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
    wait_for(lambda: occ_failed(d), timeout=60, what="the refused mail")
    d.stop()
    d = daemon_factory(conf, port, now="2024-03-07T09:00").start()
    drv = chromium_driver()
    try:
        from selenium.webdriver.common.by import By
        drv.get(d.base + "/")
        page = drv.page_source
        # above the filters and the overview
        top = drv.find_element(By.ID, "canh-bao")
        assert page.index('id="canh-bao"') < page.index('id="tong-hop"')
        assert top.find_element(By.TAG_NAME, "h2").text == \
            "⚠ 1 thư không gửi được"
        li = top.find_element(By.TAG_NAME, "li").text
        assert "Ủy ban Mặt trận Tổ quốc Việt Nam Thành phố" in li
        # the reason as the sender recorded it (curl's words and the code)
        assert "mttq@example.vn" in li and "550" in li
        link = top.find_element(By.LINK_TEXT, "Xem chi tiết")
        assert link.get_attribute("href").endswith("#that-bai")
        detail = drv.find_element(By.ID, "that-bai").text
        assert "remind-7d" in detail and "mttq@example.vn" in detail
        shot(drv, "page-failed-notices.png")
    finally:
        drv.quit()
        d.stop()


def occ_failed(d):
    return any(f["state"] == "failed" for f in status_json(d)["failed"])


def many_units(n):
    groups = "".join(f"\n[group g{g}]\nname = Cụm xã số {g}\n"
                     for g in range(20))
    return groups + "".join(
        f"\n[unit xa-{i:05d}]\nname = Ban Chỉ đạo xã số {i}\n"
        f"email = bcd{i}@xa.example.vn\ngroups = g{i % 20}\n"
        for i in range(n))


def test_page_at_10000_units(daemon_factory, tmp_path, port):
    """Exact counts, bounded rows, the same order and labels; the admin's
    page too; Chromium renders it."""
    conf = make_config(tmp_path, port, units=many_units(10000))
    init_state(conf, port, now="2024-06-12T09:00")
    r = ctl(conf, "received", "xa-00007", "h1/2024-06-13", "--nil",
            now="2024-06-12T10:00")
    assert r.returncode == 0, r.stderr
    d = daemon_factory(conf, port, now=NOW).start(timeout=120)
    try:
        st, _, body = d.get("/")
        assert st == 200
        page = body.decode()
        # bounded: a few hundred rows per kind, whatever the unit count
        assert len(body) < 3_000_000, len(body)
        h1 = page.split('id="o-h1-2024-06-13"')[1].split("</section>")[0]
        assert "Chưa nộp: 9999" in h1 and "không phát sinh: 1" in h1
        assert h1.count("Chưa nộp</td>") == 300
        assert "và 9699 đơn vị khác" in h1
        assert h1.index("Báo cáo sơ kết 6 tháng đầu năm 2024") < 200
        st, hdr, _ = post_form(d, "/login", {"token": ADMIN_TOKEN})
        cookie = hdr["Set-Cookie"].split(";")[0]
        t0 = time.monotonic()
        st, _, admin = d.get("/", headers={"Cookie": cookie})
        took = time.monotonic() - t0
        assert st == 200 and len(admin) < 12_000_000, len(admin)
        print(f"10,000 units: anonymous page {len(body) / 1e3:.0f} kB, "
              f"admin page {len(admin) / 1e3:.0f} kB in {took * 1000:.0f} ms")
        drv = chromium_driver()
        try:
            drv.get(d.base + "/")
            rows = overview(drv)
            assert rows[0] == ("Báo cáo sơ kết 6 tháng đầu năm 2024",
                               "quá hạn 7 ngày")
            # the past below, latest first (since = 2023-01-01 here)
            t = NOW[:10]
            assert rows[5:] == [
                ("Báo cáo quý I/2024", "quá hạn 99 ngày"),
                ("Báo cáo tổng kết năm 2023",
                 f"quá hạn {days('2023-12-13', t)} ngày"),
                ("Báo cáo quý III/2023",
                 f"quá hạn {days('2023-09-13', t)} ngày"),
                ("Báo cáo sơ kết 6 tháng đầu năm 2023",
                 f"quá hạn {days('2023-06-13', t)} ngày")]
            assert [o.text for o in drv.find_elements(
                By_css(), "select[name='group'] option")][1] == "Cụm xã số 0"
            shot(drv, "page-10000-units.png")
        finally:
            drv.quit()
    finally:
        d.stop()


def By_css():
    from selenium.webdriver.common.by import By
    return By.CSS_SELECTOR


@pytest.mark.parametrize("extra,msg", [
    ("[group nowhere]\nname = Không ai\n", "[group nowhere]: no unit is in "
     "this group"),
    ("[group phong-ban]\n", "[group phong-ban] has no name"),
    ("[group phong-ban]\nname = A\n[group phong-ban]\nname = B\n",
     "duplicate section [group phong-ban]"),
])
def test_group_config_errors(tmp_path, port, extra, msg):
    from conftest import CUTOFFD
    import subprocess
    conf = example_conf(tmp_path, port, extra=extra)
    r = subprocess.run([str(CUTOFFD), "--check", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    line = next(l for l in r.stderr.splitlines() if msg in l)
    assert re.match(rf"{re.escape(str(conf))}:\d+: ", line), line
