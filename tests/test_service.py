"""What the installed service relies on, without a container: an inert
configuration in a fresh directory, the installed data directory and its
per-file overrides, the admin token made on first start, --check errors at
priority err under journald, the watchdog."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import CUTOFFCTL, CUTOFFD, ROOT, ctl, http

DATADIR = ROOT / "conf"   # laid out as $(DATADIR): templates/, holidays-vn.ics
INSTALLED = ROOT / "conf" / "cutoffd.conf.dist"


def inert(tmp, port):
    """The installed configuration, with a state and port of the test's."""
    text = INSTALLED.read_text()
    text = text.replace("state      = /var/lib/cutoffd/state.db",
                        "state      = state.db")
    text = text.replace("listen     = 127.0.0.1:8470",
                        f"listen     = 127.0.0.1:{port}")
    assert "state.db\n" in text and str(port) in text
    path = Path(tmp) / "cutoffd.conf"
    path.write_text(text)
    return path


def hup_pending(pid):
    """Whether SIGHUP waits for the process (its ShdPnd mask, bit 0)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return int(line.split()[1], 16) & 1
    return False


def env_data(**kw):
    return dict(os.environ, CUTOFFD_DATADIR=str(DATADIR), **kw)


def test_installed_config_checks_in_a_fresh_directory(tmp_path, port):
    conf = inert(tmp_path, port)
    r = subprocess.run([CUTOFFD, "--check", "-c", conf], capture_output=True,
                       text=True, env=env_data())
    assert r.returncode == 0, r.stderr
    assert "0 units, 0 cycles" in r.stdout
    # the holidays came from the data directory
    assert " 0 holidays" not in r.stdout
    # without the data directory the templates are missing, and said so
    r = subprocess.run([CUTOFFD, "--check", "-c", conf], capture_output=True,
                       text=True, env=dict(os.environ,
                                           CUTOFFD_DATADIR=str(tmp_path / "none")))
    assert r.returncode == 1
    assert f"{conf}: template vi/remind.txt not found in {tmp_path}/templates, " \
        f"{tmp_path}/none/templates" in r.stderr, r.stderr


def test_inert_daemon_starts_and_makes_its_admin_token(daemon_factory,
                                                       tmp_path, port):
    conf = inert(tmp_path, port)
    env = {"CUTOFFD_DATADIR": str(DATADIR)}
    r = subprocess.run([CUTOFFCTL, "-c", conf, "admin-token"],
                       capture_output=True, text=True, env=env_data())
    assert r.returncode == 2 and "creates" in r.stderr
    d = daemon_factory(conf, port, env=env).start()
    assert "nothing is chased" in d.logtext()
    tok = tmp_path / "admin.token"
    assert tok.stat().st_mode & 0o777 == 0o600
    token = tok.read_text().strip()
    assert len(token) == 48
    r = subprocess.run([CUTOFFCTL, "-c", conf, "admin-token"],
                       capture_output=True, text=True, env=env_data())
    assert r.returncode == 0 and r.stdout == token + "\n"
    st, _, body = d.get("/calendar.ics")
    assert st == 200 and b"BEGIN:VCALENDAR" in body and b"VEVENT" not in body
    # the token works for the API (a unit that does not exist: 4xx, not 401)
    st, _, _ = http("POST", d.base + "/api/submissions",
                    body=b'{"unit":"x","occurrence":"q1/2024-03-13"}',
                    headers={"Authorization": f"Bearer {token}",
                             "Content-Type": "application/json"})
    assert st not in (401, 403)
    # kept across restarts and reloads
    d.reload()
    assert d.stop() == 0
    d2 = daemon_factory(conf, port, env=env).start()
    assert tok.read_text().strip() == token
    assert "created the admin token" not in d2.logtext().split(
        "started:")[-1]
    d2.stop()


def test_templates_override_file_by_file(tmp_path, port):
    conf = inert(tmp_path, port)
    vi = tmp_path / "templates" / "vi"
    vi.mkdir(parents=True)
    # one file overridden: the others still come from the data directory
    (vi / "remind.txt").write_text("Subject: Nhắc {{title}}\n\nKính gửi {{unit}}\n")
    r = subprocess.run([CUTOFFD, "--check", "-c", conf], capture_output=True,
                       text=True, env=env_data())
    assert r.returncode == 0, r.stderr
    # and it is really read: a bad placeholder in it is an error there
    (vi / "remind.txt").write_text("Subject: {{no_such}}\n\nx\n")
    r = subprocess.run([CUTOFFD, "--check", "-c", conf], capture_output=True,
                       text=True, env=env_data())
    assert r.returncode == 1 and str(vi / "remind.txt") in r.stderr, r.stderr


def test_check_errors_at_priority_err_under_journald(tmp_path, port):
    conf = inert(tmp_path, port)
    conf.write_text(conf.read_text() + "\n[unit Bad]\n")
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        st = os.fstat(f.fileno())
        for stream, prefix in ((f"{st.st_dev}:{st.st_ino}", "<3>"),
                               # not under journald: bare FILE:LINE lines
                               (None, "")):
            f.seek(0)
            f.truncate()
            env = env_data(JOURNAL_STREAM=stream or "")
            if stream is None:
                del env["JOURNAL_STREAM"]
            r = subprocess.run([CUTOFFD, "--check", "-c", conf], stderr=f,
                               env=env)
            assert r.returncode == 1
            f.flush()
            lines = err.read_text().splitlines()
            assert lines, "no error printed"
            for line in lines:
                assert line.startswith(prefix + f"{conf}:"), (stream, line)


def notify_socket(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    s.bind(path)
    s.settimeout(0.2)
    return s, path


def messages(s, seconds):
    got = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(s.recv(4096).decode())
        except socket.timeout:
            pass
    return got


def test_watchdog_only_when_asked(daemon_factory, tmp_path, port):
    conf = inert(tmp_path, port)
    s, path = notify_socket(tmp_path)
    # WATCHDOG_USEC=400 ms: WATCHDOG=1 every 200 ms from the loop
    d = daemon_factory(conf, port, env={"CUTOFFD_DATADIR": str(DATADIR),
                                        "NOTIFY_SOCKET": path,
                                        "WATCHDOG_USEC": "400000"}).start()
    got = messages(s, 1.5)
    assert any("READY=1" in m for m in got), got
    assert sum(m == "WATCHDOG=1" for m in got) >= 3, got
    d.stop()
    # not asked (or asked of another pid): no watchdog pings, no wake-ups
    for extra in ({}, {"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}):
        messages(s, 0.3)
        d = daemon_factory(conf, port, env={"CUTOFFD_DATADIR": str(DATADIR),
                                            "NOTIFY_SOCKET": path,
                                            **extra}).start()
        got = messages(s, 1.0)
        assert any("READY=1" in m for m in got), got
        assert not any("WATCHDOG=1" in m for m in got), (extra, got)
        d.stop()
    s.close()


def test_cutoffctl_reload_waits_for_the_outcome(daemon_factory, tmp_path,
                                                port):
    conf = inert(tmp_path, port)
    env = {"CUTOFFD_DATADIR": str(DATADIR)}
    d = daemon_factory(conf, port, env=env).start()
    pid = str(d.proc.pid)
    good = conf.read_text() + """
[secretariat]
name  = Thường trực
email = thuongtruc@example.vn

[policy standard]
at     = 08:00
remind = -7d 0d

[cycle q1]
title  = Báo cáo quý I
due    = 03-13

[unit tu-phap]
name  = Phòng Tư pháp
email = tuphap@example.vn
"""
    conf.write_text(good)
    r = subprocess.run([CUTOFFCTL, "-c", conf, "reload", pid],
                       capture_output=True, text=True, env=env_data())
    assert r.returncode == 0 and r.stdout == "reloaded\n", r.stderr
    # no waiting on our side: the reload is done when cutoffctl returns
    st, _, body = d.get("/calendar.ics")
    assert st == 200 and "quý I".encode() in body
    # $MAINPID, as systemd's ExecReload has it.  A file that breaks after
    # cutoffctl read it (between `cutoffd --check` and the daemon's own
    # validation): the daemon is stopped until cutoffctl's SIGHUP is
    # pending, then the file breaks and the daemon goes on.
    broken = good.replace("email = tuphap@example.vn\n", "")
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        ctl_proc = subprocess.Popen([CUTOFFCTL, "-c", conf, "reload"],
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True,
                                    env=env_data(MAINPID=pid))
        deadline = time.monotonic() + 20
        while not hup_pending(d.proc.pid):
            assert time.monotonic() < deadline and ctl_proc.poll() is None
            time.sleep(0.01)
        conf.write_text(broken)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    out, err = ctl_proc.communicate(timeout=60)
    assert ctl_proc.returncode == 1 and "rejected" in err, (out, err)
    assert d.get("/calendar.ics")[0] == 200
    assert "quý I".encode() in d.get("/calendar.ics")[2]
    d.stop()
    # a daemon that is not there
    conf.write_text(good)
    r = subprocess.run([CUTOFFCTL, "-c", conf, "reload", pid],
                       capture_output=True, text=True, env=env_data())
    assert r.returncode == 2
