"""cutoffd --check and cutoffctl check/plan against real configurations."""
import os
import shutil
import subprocess

from conftest import (CUTOFFCTL, CUTOFFD, EXAMPLE, ROOT, ctl, init_state,
                      make_config)


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True,
                          text=True, timeout=60)


def test_example_config_checks(tmp_path):
    # The shipped example, beside its holidays and templates.
    shutil.copy(ROOT / "conf" / "holidays-vn.ics", tmp_path)
    shutil.copytree(ROOT / "conf" / "templates", tmp_path / "templates")
    shutil.copy(EXAMPLE, tmp_path / "city.conf")
    r = run(CUTOFFD, "--check", "-c", tmp_path / "city.conf")
    assert r.returncode == 0, r.stderr
    assert "11 units" in r.stdout and "4 cycles" in r.stdout
    assert r.stdout.count("\n") == 1
    r2 = run(CUTOFFCTL, "-c", tmp_path / "city.conf", "check")
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_make_run_config_checks():
    r = run(CUTOFFD, "--check", "-c", ROOT / "conf" / "cutoffd.conf")
    # admin.token is created by `make run`; without it the check names it
    if r.returncode != 0:
        assert "admin.token" in r.stderr
    else:
        assert "11 units" in r.stdout


def test_broken_config_reports_every_error_with_line(tmp_path, port):
    conf = make_config(tmp_path, port)
    text = conf.read_text().splitlines()
    # Break three things in different places.
    idx_at = next(i for i, l in enumerate(text) if l.startswith("at "))
    text[idx_at] = "at       = 25:00"
    idx_units = next(i for i, l in enumerate(text) if l.startswith("units  = *"))
    text[idx_units] = "units  = @no-such-group"
    text.append("bogus = 1")
    conf.write_text("\n".join(text) + "\n")
    r = run(CUTOFFD, "--check", "-c", conf)
    assert r.returncode == 1
    assert r.stdout == ""
    errs = r.stderr.strip().splitlines()
    assert f"{conf}:{idx_at + 1}:" in r.stderr, r.stderr
    assert f"{conf}:{idx_units + 1}:" in r.stderr, r.stderr
    assert f"{conf}:{len(text)}:" in r.stderr, r.stderr
    assert len(errs) >= 3
    for e in errs:
        assert e.startswith(f"{conf}:"), e
    r2 = ctl(conf, "check")
    assert r2.returncode == 1 and f"{conf}:{idx_at + 1}:" in r2.stderr


def test_overlong_line_is_an_error(tmp_path, port):
    conf = make_config(tmp_path, port)
    lines = conf.read_text().splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith("title  = Báo cáo quý I"))
    lines[i] = "title  = " + "Báo cáo " * 40
    conf.write_text("\n".join(lines) + "\n")
    r = run(CUTOFFD, "--check", "-c", conf)
    assert r.returncode == 1
    assert f"{conf}:{i + 1}:" in r.stderr


def test_crlf_in_header_field_is_rejected(tmp_path, port):
    conf = make_config(tmp_path, port)
    text = conf.read_text().replace(
        "name   = Phòng Tư pháp\n", "name   = Phòng Tư pháp\r\n")
    conf.write_bytes(text.encode())
    r = run(CUTOFFD, "--check", "-c", conf)
    assert r.returncode == 1, r.stdout


def test_missing_file_and_bad_args(tmp_path):
    r = run(CUTOFFD, "--check", "-c", tmp_path / "nope.conf")
    assert r.returncode == 1 and "nope.conf" in r.stderr
    r = run(CUTOFFD, "--speed", "-3", "-c", tmp_path / "nope.conf")
    assert r.returncode == 1
    r = run(CUTOFFD, "--help")
    assert r.returncode == 0 and "--check" in r.stdout and "--speed" in r.stdout
    r = run(CUTOFFCTL, "--help")
    assert r.returncode == 0 and "feed-url" in r.stdout
    r = run(CUTOFFCTL, "-c", tmp_path / "nope.conf", "frobnicate")
    assert r.returncode == 1


def test_plan_format_and_order(conf):
    r = ctl(conf, "plan", "--from", "2024-03-01", "--to", "2024-03-31")
    assert r.returncode == 0, r.stderr
    rows = [l.split("\t") for l in r.stdout.splitlines()]
    assert rows, "plan is empty"
    for row in rows:
        assert len(row) == 6, row
        assert "2024-03-01T00:00" <= row[0] <= "2024-03-31T23:59"
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    # q1 due Wed 13/03/2024: reminders -7d (06/03) ... 0d at 08:00
    first = [r for r in rows if r[2] == "tu-phap" and r[3] == "remind-7d"]
    assert first == [["2024-03-06T08:00", "q1/2024-03-13", "tu-phap",
                      "remind-7d", "email", "tuphap@example.vn"]]
    esc = [r for r in rows if r[2] == "tu-phap" and r[3] == "escalate+1d"]
    assert esc and esc[0][0] == "2024-03-14T08:00"
    assert esc[0][5] == "truongphong.tuphap@example.vn"
    sec = [r for r in rows if r[3] == "escalate+3d" and
           r[5] == "thuongtruc@example.vn"]
    assert len(sec) == 4  # one row per unit; the sender digests them
    # --to DATE includes that day: a step on it is listed, one after not
    r = ctl(conf, "plan", "--from", "2024-03-01", "--to", "2024-03-06")
    days = {l.split("\t")[0][:10] for l in r.stdout.splitlines()}
    assert "2024-03-06" in days and "2024-03-07" not in days


def test_plan_unit_filter_and_submission(conf, port):
    init_state(conf, port)
    r = ctl(conf, "plan", "--from", "2024-03-01", "--to", "2024-03-31",
            "--unit", "mttq")
    assert r.returncode == 0, r.stderr
    units = {l.split("\t")[2] for l in r.stdout.splitlines()}
    assert units == {"mttq"}
    r = ctl(conf, "received", "mttq", "q1/2024-03-13", "--at",
            "2024-03-10T09:00", now="2024-03-10T09:00")
    assert r.returncode == 0, r.stderr
    r = ctl(conf, "plan", "--from", "2024-03-01", "--to", "2024-03-31",
            "--unit", "mttq")
    assert r.returncode == 0
    assert "q1/2024-03-13" not in r.stdout
    r = ctl(conf, "plan", "--unit", "nobody")
    assert r.returncode == 1


def test_received_undo_status_exit_codes(conf, port):
    init_state(conf, port)
    now = "2024-03-20T10:00"
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13", "--at",
            "2024-03-14T09:30", "--note", "Nhận qua thư điện tử", now=now)
    assert r.returncode == 0, r.stderr
    assert "late" in r.stdout
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13", now=now)
    assert r.returncode == 1 and "already" in r.stderr
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-14", now=now)
    assert r.returncode == 1
    r = ctl(conf, "received", "ghost", "q1/2024-03-13", now=now)
    assert r.returncode == 1
    r = ctl(conf, "status", "q1/2024-03-13", now=now)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    tp = [l for l in lines if l.startswith("tu-phap\t")]
    assert tp and tp[0].split("\t")[1] == "submitted" and "late" in tp[0]
    assert any(l.startswith("mttq\tmissing") for l in lines)
    r = ctl(conf, "status", "q3/2024-09-13", now=now)
    assert r.returncode == 0
    assert any(l.startswith("mttq\tnot-due") for l in r.stdout.splitlines())
    r = ctl(conf, "status", "zz/2024-01-01", now=now)
    assert r.returncode == 1
    r = ctl(conf, "undo", "tu-phap", "q1/2024-03-13", now=now)
    assert r.returncode == 0, r.stderr
    r = ctl(conf, "undo", "tu-phap", "q1/2024-03-13", now=now)
    assert r.returncode == 1
    r = ctl(conf, "status", "q1/2024-03-13", now=now)
    assert any(l.startswith("tu-phap\tmissing") for l in r.stdout.splitlines())


def test_state_unreachable_exit_2(tmp_path, port):
    conf = make_config(tmp_path, port)
    text = conf.read_text().replace("state      = state.db",
                                    "state      = no/such/dir/state.db")
    conf.write_text(text)
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13")
    assert r.returncode == 2, (r.returncode, r.stderr)
    r = ctl(conf, "feed-url", "tu-phap")
    assert r.returncode == 2


def test_feed_url_is_stable(conf, port):
    init_state(conf, port)
    a = ctl(conf, "feed-url", "tu-phap")
    b = ctl(conf, "feed-url", "tu-phap")
    assert a.returncode == 0 and a.stdout == b.stdout
    assert a.stdout.startswith(f"http://127.0.0.1:{port}/units/tu-phap.ics?token=")
    c = ctl(conf, "feed-url", "mttq")
    assert c.stdout.split("token=")[1] != a.stdout.split("token=")[1]


def test_make_install_destdir(tmp_path):
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "install",
                        f"DESTDIR={dest}", "PREFIX=/usr"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    unitdir = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir",
                              "systemd"], capture_output=True,
                             text=True).stdout.strip() or "/usr/lib/systemd/system"
    unitdir = unitdir.lstrip("/")
    for f in ("usr/sbin/cutoffd", "usr/sbin/cutoffctl",
              "usr/share/man/man8/cutoffd.8", "usr/share/man/man8/cutoffctl.8",
              "usr/share/man/man5/cutoffd.conf.5",
              f"{unitdir}/cutoffd.service",
              "usr/lib/sysusers.d/cutoffd.conf",
              "usr/lib/tmpfiles.d/cutoffd.conf",
              "etc/cutoffd/cutoffd.conf", "usr/share/cutoffd/holidays-vn.ics",
              "usr/share/cutoffd/templates/vi/remind.txt"):
        assert (dest / f).is_file(), f
    assert not (dest / "usr/bin").exists()
    unit = (dest / unitdir / "cutoffd.service").read_text()
    assert "ExecStart=/usr/sbin/cutoffd" in unit and "@SBINDIR@" not in unit
    # the installed configuration is valid where it was installed, with
    # the installed templates and holidays
    conf = dest / "etc/cutoffd/cutoffd.conf"
    text = conf.read_text().replace("/var/lib/cutoffd/", f"{tmp_path}/")
    conf.write_text(text)
    os.environ["CUTOFFD_DATADIR"] = str(dest / "usr/share/cutoffd")
    try:
        r = run(dest / "usr/sbin/cutoffd", "--check", "-c", conf)
    finally:
        del os.environ["CUTOFFD_DATADIR"]
    assert r.returncode == 0, r.stderr
    assert "0 units, 0 cycles" in r.stdout
