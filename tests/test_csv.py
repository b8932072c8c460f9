"""/status.csv and `cutoffctl status --csv`: read back by Python's csv
module and by LibreOffice (soffice --headless --convert-to xlsx), with
Vietnamese, quotes, commas and line breaks intact."""
import csv
import io
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile

import pytest

from conftest import ADMIN_TOKEN, CUTOFFCTL, Daemon, ctl, http, make_config

OCC = "q1/2024-03-13"
NOW = "2024-03-14T10:00"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": "application/json"}
NOTE = 'Đã nhận bản giấy, "hỏa tốc"\ncòn thiếu phụ lục'
HEADER = ["occurrence", "title", "due", "unit", "name", "state",
          "received", "source", "note"]


def make_store(conf, port):
    """The state store, made as an installation makes it: by the daemon's
    first start (on 01/03/2024, so nothing here is before `since`)."""
    d = Daemon(conf, port, now="2024-03-01T00:00")
    d.start()
    assert d.stop() == 0, d.logtext()


@pytest.fixture
def conf(tmp_path, port):
    c = make_config(tmp_path, port)
    make_store(c, port)
    return c


def fill(conf):
    for args in [
        ("received", "tu-phap", OCC, "--at", "2024-03-12T15:30",
         "--note", NOTE),
        ("received", "mttq", OCC, "--nil", "--at", "2024-03-13T09:00"),
        ("received", "p-tan-loi", OCC, "--at", "2024-03-14T08:00"),
        ("extend", OCC, "2024-03-20", "--unit", "ld-tbxh"),
    ]:
        r = ctl(conf, *args, now=NOW)
        assert r.returncode == 0, (args, r.stderr)


def parse(raw):
    assert raw.startswith(b"\xef\xbb\xbf"), raw[:10]
    text = raw.decode("utf-8-sig")
    # every record ends CRLF; a bare LF only inside a quoted field
    assert text.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == HEADER
    return rows[1:]


def check_rows(rows):
    q1 = {r[3]: r for r in rows if r[0] == OCC}
    assert set(q1) == {"ld-tbxh", "tu-phap", "mttq", "p-tan-loi"}
    tp = q1["tu-phap"]
    assert tp == [OCC, "Báo cáo quý I", "13/03/2024", "tu-phap",
                  "Phòng Tư pháp", "submitted", "12/03/2024 15:30", "cli",
                  NOTE]
    assert q1["mttq"][5] == "nil" and q1["mttq"][6] == "13/03/2024 09:00"
    assert q1["mttq"][4] == "Ủy ban Mặt trận Tổ quốc Việt Nam Thành phố"
    assert q1["p-tan-loi"][5] == "submitted"
    assert q1["p-tan-loi"][6] == "14/03/2024 08:00"
    # the unit's own (extended) due date; not due yet on 14/03
    ld = q1["ld-tbxh"]
    assert ld[2] == "20/03/2024" and ld[5] == "not-due" and ld[6] == ""
    return q1


def test_cli_csv(conf):
    fill(conf)
    out = subprocess.run([str(CUTOFFCTL), "-c", str(conf), "--now", NOW,
                          "status", "--csv", OCC], capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    check_rows(parse(out.stdout))
    # without an occurrence: the default window, still one row per pair
    out = subprocess.run([str(CUTOFFCTL), "-c", str(conf), "--now", NOW,
                          "status", "--csv"], capture_output=True, timeout=60)
    rows = parse(out.stdout)
    assert len({(r[0], r[3]) for r in rows}) == len(rows)
    r = ctl(conf, "status", "--csv", "q1/2024-03-14")
    assert r.returncode == 1


def test_http_csv_same_rows_and_access(daemon_factory, tmp_path, port):
    conf = make_config(tmp_path, port,
                       extra_daemon="calendar_token = cal-token-42")
    make_store(conf, port)
    fill(conf)
    d = daemon_factory(conf, port, now=NOW).start()
    st, hdr, _ = d.get("/status.csv")
    assert st == 401                       # the rule of /status.json
    assert d.get("/status.json")[0] == 401
    st, hdr, raw = d.get("/status.csv?token=cal-token-42&cycle=q1")
    assert st == 200, raw
    assert hdr["Content-Type"].startswith("text/csv")
    assert "charset=utf-8" in hdr["Content-Type"]
    check_rows(parse(raw))
    st, _, raw = d.get("/status.csv?occurrence=" + OCC,
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert st == 200
    cli = subprocess.run([str(CUTOFFCTL), "-c",
                          str(conf), "--now", NOW, "status", "--csv", OCC],
                         capture_output=True, timeout=60).stdout
    assert parse(raw) == parse(cli)
    # a group filter keeps only its units
    st, _, raw = d.get("/status.csv?token=cal-token-42&group=doan-the")
    assert {r[3] for r in parse(raw)} == {"mttq"}
    assert http("POST", d.base + "/status.csv", b"")[0] == 405
    d.stop()


def test_csv_guards_formulas(conf):
    r = ctl(conf, "received", "tu-phap", OCC, "--note", "=HYPERLINK(\"x\")",
            now=NOW)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(CUTOFFCTL), "-c", str(conf), "--now", NOW,
                          "status", "--csv", OCC], capture_output=True)
    tp = next(r for r in parse(out.stdout) if r[3] == "tu-phap")
    assert tp[8] == "'=HYPERLINK(\"x\")"


def xlsx_cells(path):
    """{(row, col): text} of the first sheet, shared and inline strings."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as z:
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            root = ET.fromstring(z.read("xl/sharedStrings.xml"))
            for si in root.findall("m:si", ns):
                shared.append("".join(t.text or "" for t in
                                      si.iter(f"{{{ns['m']}}}t")))
        sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    cells = {}
    for c in sheet.iter(f"{{{ns['m']}}}c"):
        ref = c.get("r")
        col = "".join(ch for ch in ref if ch.isalpha())
        row = int("".join(ch for ch in ref if ch.isdigit()))
        ci = 0
        for ch in col:
            ci = ci * 26 + ord(ch) - 64
        v = c.find("m:v", ns)
        if c.get("t") == "s":
            cells[(row, ci)] = shared[int(v.text)]
        elif c.get("t") == "inlineStr":
            cells[(row, ci)] = "".join(t.text or "" for t in
                                       c.iter(f"{{{ns['m']}}}t"))
        elif v is not None:
            cells[(row, ci)] = v.text
    return cells


@pytest.mark.skipif(shutil.which("soffice") is None,
                    reason="libreoffice-calc not installed "
                    "(scripts/install-deps)")
def test_libreoffice_reads_it(conf, tmp_path):
    fill(conf)
    out = subprocess.run([str(CUTOFFCTL), "-c", str(conf), "--now", NOW,
                          "status", "--csv", OCC], capture_output=True)
    src = tmp_path / "status.csv"
    src.write_bytes(out.stdout)
    profile = tmp_path / "lo-profile"
    # What Calc's text import dialog picks for this file (comma, double
    # quote, UTF-8).  Headless, without the dialog, LibreOffice 7.4 reads
    # any CSV in a legacy 8-bit charset whatever its BOM says, so the
    # charset is given as the dialog would detect it.
    r = subprocess.run(["soffice", f"-env:UserInstallation=file://{profile}",
                        "--headless", "--infilter=CSV:44,34,76",
                        "--convert-to", "xlsx", "--outdir",
                        str(tmp_path), str(src)], capture_output=True,
                       timeout=180, env=dict(os.environ, HOME=str(tmp_path)))
    xlsx = tmp_path / "status.xlsx"
    assert xlsx.exists(), (r.stdout, r.stderr)
    cells = xlsx_cells(xlsx)
    header = [cells.get((1, i + 1)) for i in range(len(HEADER))]
    assert header == HEADER, header          # the BOM is not in A1
    rows = {}
    for row in range(2, 10):
        if (row, 4) in cells:
            rows[cells[(row, 4)]] = row
    assert set(rows) == {"ld-tbxh", "tu-phap", "mttq", "p-tan-loi"}
    tp = rows["tu-phap"]
    assert cells[(tp, 2)] == "Báo cáo quý I"
    assert cells[(tp, 5)] == "Phòng Tư pháp"
    assert cells[(tp, 9)] == NOTE            # quotes, comma, line break
    assert cells[(rows["mttq"], 5)] == \
        "Ủy ban Mặt trận Tổ quốc Việt Nam Thành phố"
    assert cells[(rows["mttq"], 6)] == "nil"
    assert cells[(tp, 1)] == OCC
