"""cutoffd as an installed systemd service, in a booted Debian 12 container.

A Debian 12 root is made once with debootstrap (cached in build/nspawn-root),
copied for each run, `make install PREFIX=/usr DESTDIR=<copy>` puts the
build in it, `systemd-nspawn --boot` boots it with systemd 252 as PID 1, and
the tests drive it with `nsenter -t <container init> -a systemctl ...`.  The
container shares the host's network, so /healthz is reached on loopback at
a port chosen for the test (the only edit to the installed configuration
before the first start).

A machine that cannot boot the container FAILS these tests: a suite that
did not test the service must not look green.  To run the rest of the suite
where that is known and accepted, set CUTOFFD_SKIP_SYSTEMD=<reason>: the
tests are then skipped with that reason in pytest's summary (-rs).
"""
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port, http

CACHE = ROOT / "build" / "nspawn-root"
RUN = ROOT / "build" / "nspawn-run"
# What the daemon links against, and systemd as PID 1; debootstrap pulls in
# their dependencies.
PACKAGES = ("systemd,systemd-sysv,libcurl4,libev4,libical3,libinih1,"
            "libjansson4,libmicrohttpd12,libsqlite3-0,libssl3,tzdata")
CONF = "/etc/cutoffd/cutoffd.conf"

SKIP = os.environ.get("CUTOFFD_SKIP_SYSTEMD")
pytestmark = pytest.mark.skipif(bool(SKIP), reason=f"CUTOFFD_SKIP_SYSTEMD: "
                                f"{SKIP} (the installed service was NOT "
                                "tested)")


def mirror():
    """The Debian mirror /etc/apt names (deb822 or one-line), else deb.d.o."""
    if os.environ.get("CUTOFFD_DEBIAN_MIRROR"):
        return os.environ["CUTOFFD_DEBIAN_MIRROR"]
    texts = []
    for p in [Path("/etc/apt/sources.list"),
              *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            texts.append(p.read_text())
        except OSError:
            pass
    for t in texts:
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)",
                             t, re.M):
            uri = m.group(1)
            if "security" not in uri and uri.startswith("http"):
                return uri
    return "http://deb.debian.org/debian"


def run(*cmd, check=True, timeout=120, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}:\n{r.stdout}"
                             f"\n{r.stderr}")
    return r


def make_root():
    """build/nspawn-root, made once (a cold debootstrap takes ~40 s)."""
    if (CACHE / "usr" / "lib" / "systemd" / "systemd").exists():
        if not (CACHE / "etc" / "cutoffd").exists():
            return
        # something installed into the cache itself: start again clean
        shutil.rmtree(CACHE)
    tmp = CACHE.with_name("nspawn-root.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    run("debootstrap", "--variant=minbase", f"--include={PACKAGES}",
        "bookworm", tmp, mirror(), timeout=1200)
    tmp.rename(CACHE)


def remove_run():
    if RUN.is_symlink():
        RUN.unlink()
    shutil.rmtree(RUN, ignore_errors=True)


def is_init(pid):
    """The container's PID 1: systemd in a PID namespace not ours (not a
    helper nspawn forks on the way, whose systemctl would be the host's)."""
    try:
        return (Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
                and os.readlink(f"/proc/{pid}/ns/pid") !=
                os.readlink("/proc/self/ns/pid"))
    except OSError:
        return False


def children(pid):
    kids = []
    for t in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += (t / "children").read_text().split()
        except OSError:
            pass
    return [int(k) for k in kids]


class Container:
    def __init__(self, root):
        self.root = Path(root)
        self.name = f"cutoffd-test-{os.getpid()}"
        self.log_path = ROOT / "build" / "nspawn.log"
        self.proc = None
        self.init = None

    def boot(self, timeout=90):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--boot", "--register=no", "--keep-unit",
             "--quiet", f"--machine={self.name}", "-D", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("the container did not boot:\n" +
                                     self.log_path.read_text(errors="replace"))
            kids = [k for k in children(self.proc.pid) if is_init(k)]
            if kids:
                self.init = kids[0]
                r = self.sh("systemctl", "is-system-running", "--wait",
                            check=False, timeout=max(5, deadline -
                                                     time.monotonic()))
                if r.stdout.strip() in ("running", "degraded"):
                    return
            time.sleep(0.2)
        raise AssertionError("the container did not finish booting:\n" +
                             self.log_path.read_text(errors="replace"))

    def sh(self, *cmd, check=True, timeout=60):
        try:
            return run("nsenter", "-t", self.init, "-a", *cmd, check=check,
                       timeout=timeout)
        except AssertionError as e:
            if cmd[0] != "systemctl":
                raise
            raise AssertionError(f"{e}\njournal:\n{self.journal()}") from None

    def journal(self, *args):
        return self.sh("journalctl", "--no-pager", "-o", "cat", "-u",
                       "cutoffd", *args).stdout

    def poweroff(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.init:
            self.sh("systemctl", "poweroff", check=False)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def box():
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter")
               if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail("cannot boot a container here (" +
                    ("not root" if os.geteuid() != 0 else
                     "missing " + ", ".join(missing)) +
                    "; scripts/install-deps installs debootstrap and "
                    "systemd-container): the installed service is NOT "
                    "tested. Set CUTOFFD_SKIP_SYSTEMD=<reason> to skip.")
    make_root()
    remove_run()
    RUN.mkdir()
    # the contents, so that a symlinked cache is copied, never shared
    run("cp", "-a", "--reflink=auto", f"{CACHE}/.", RUN)
    run("make", "-s", "-C", ROOT, "install", "PREFIX=/usr",
        f"DESTDIR={RUN}", timeout=600)
    port = free_port()
    conf = RUN / CONF.lstrip("/")
    installed = conf.read_text()
    # the one edit before the first start: a port of the test's own
    conf.write_text(installed.replace("listen     = 127.0.0.1:8470",
                                      f"listen     = 127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in conf.read_text()
    c = Container(RUN)
    c.port = port
    c.installed = installed
    try:
        c.boot()
        yield c
    finally:
        c.poweroff()
        remove_run()


def healthz(box):
    try:
        st, _, body = http("GET", f"http://127.0.0.1:{box.port}/healthz",
                           timeout=5)
        return st, body
    except OSError as e:
        return None, str(e)


def wait_log(box, text, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = box.journal()
        if text in j:
            return j
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the journal:\n{box.journal()}")


def write_conf(box, text):
    (box.root / CONF.lstrip("/")).write_text(text)


REGIME = """
[secretariat]
name  = Thường trực Ban Chỉ đạo
email = thuongtruc@example.vn

[policy standard]
at     = 08:00
remind = -7d 0d

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
policy = standard

[unit tu-phap]
name  = Phòng Tư pháp
email = tuphap@example.vn
"""


def test_01_installed_files(box):
    st = (box.root / "usr/sbin/cutoffctl").stat()
    assert st.st_mode & 0o111
    assert (box.root / "usr/share/cutoffd/templates/vi/remind.txt").exists()
    assert (box.root / "usr/share/man/man8/cutoffctl.8").exists()
    # the installed configuration is valid as it is
    r = box.sh("cutoffd", "--check", "-c", CONF)
    assert "0 units, 0 cycles" in r.stdout
    # root:cutoffd 0640 once systemd-tmpfiles ran at boot
    r = box.sh("stat", "-c", "%U:%G %a", CONF)
    assert r.stdout.split() == ["root:cutoffd", "640"]


def test_02_starts_as_installed(box):
    box.sh("systemctl", "start", "cutoffd")
    assert box.sh("systemctl", "is-active", "cutoffd").stdout.strip() == \
        "active"
    assert healthz(box) == (200, b"ok\n") or healthz(box)[0] == 200
    j = wait_log(box, "nothing is chased")
    assert "created the admin token" in j
    token = box.sh("cutoffctl", "admin-token").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{48}", token)
    r = box.sh("stat", "-c", "%U %a", "/var/lib/cutoffd/admin.token")
    assert r.stdout.split() == ["cutoffd", "600"]
    sec = box.sh("systemd-analyze", "security", "cutoffd", "--no-pager",
                 check=False).stdout
    m = re.search(r"Overall exposure level for cutoffd.service: (\S+)", sec)
    print(f"systemd-analyze security: exposure {m and m.group(1)}")
    assert m and float(m.group(1)) < 2.0


def test_03_reload_edited_configuration(box):
    # a secret the service reads as its group does
    secret = box.root / "etc/cutoffd/webhook.secret"
    secret.write_text("a-webhook-signing-secret\n")
    box.sh("chown", "root:cutoffd", "/etc/cutoffd/webhook.secret")
    box.sh("chmod", "640", "/etc/cutoffd/webhook.secret")
    text = (box.root / CONF.lstrip("/")).read_text().replace(
        "[webhook]\n", "[webhook]\nsecret_file = /etc/cutoffd/webhook.secret\n")
    write_conf(box, text + REGIME)
    box.sh("systemctl", "reload", "cutoffd")
    # synchronous: once systemctl returns, the new configuration serves
    st, _, body = http("GET", f"http://127.0.0.1:{box.port}/calendar.ics")
    assert st == 200 and b"BEGIN:VEVENT" in body and "quý I".encode() in body
    wait_log(box, "reloaded: 1 units, 1 cycles")
    box.occ = re.search(r"q1/\d{4}-\d{2}-\d{2}",
                        box.sh("cutoffctl", "status").stdout).group(0)


def test_04_broken_reload_fails_and_keeps_serving(box):
    pid = box.sh("systemctl", "show", "-p", "MainPID", "--value",
                 "cutoffd").stdout.strip()
    good = (box.root / CONF.lstrip("/")).read_text()
    lines = good.splitlines()
    bad_line = len(lines) + 2
    write_conf(box, good + "\n[unit Bad]\n")
    r = box.sh("systemctl", "reload", "cutoffd", check=False)
    assert r.returncode != 0, "systemctl reload accepted a broken file"
    assert box.sh("systemctl", "is-active", "cutoffd").stdout.strip() == \
        "active"
    assert box.sh("systemctl", "show", "-p", "MainPID", "--value",
                  "cutoffd").stdout.strip() == pid
    assert healthz(box)[0] == 200
    st, _, body = http("GET", f"http://127.0.0.1:{box.port}/calendar.ics")
    assert st == 200 and "quý I".encode() in body   # the old one serves
    err = box.journal("-p", "err")
    assert f"{CONF}:{bad_line}:" in err, err
    write_conf(box, good)


def test_05_watchdog_is_fed_from_the_loop(box):
    # A 2 s watchdog: without WATCHDOG=1 every second systemd would kill
    # the daemon (SIGABRT) and restart it within 3 s.
    d = box.root / "etc/systemd/system/cutoffd.service.d"
    d.mkdir(parents=True, exist_ok=True)
    (d / "watchdog.conf").write_text("[Service]\nWatchdogSec=2s\n")
    box.sh("systemctl", "daemon-reload")
    box.sh("systemctl", "restart", "cutoffd")
    pid = box.sh("systemctl", "show", "-p", "MainPID", "--value",
                 "cutoffd").stdout.strip()
    time.sleep(6)
    show = box.sh("systemctl", "show", "-p", "MainPID", "-p", "NRestarts",
                  "-p", "WatchdogUSec", "cutoffd").stdout
    assert f"MainPID={pid}\n" in show and "NRestarts=0" in show, show
    assert "WatchdogUSec=2s" in show
    (d / "watchdog.conf").unlink()
    box.sh("systemctl", "daemon-reload")


def test_06_stop(box):
    box.sh("systemctl", "stop", "cutoffd")
    r = box.sh("systemctl", "is-active", "cutoffd", check=False)
    assert r.stdout.strip() == "inactive"
    assert healthz(box)[0] is None
    assert "stopped" in box.journal()
    # root's cutoffctl on the stopped service works as the state's owner:
    # nothing root-owned is left in /var/lib/cutoffd to lock the daemon out,
    # even the WAL and shared-memory files it re-creates (the daemon's clean
    # stop removed them); it never creates the store itself
    box.sh("sh", "-c", "rm -f /var/lib/cutoffd/state.db-wal "
           "/var/lib/cutoffd/state.db-shm")
    box.sh("cutoffctl", "received", "tu-phap", box.occ)
    owners = box.sh("sh", "-c", "stat -c '%U %n' /var/lib/cutoffd/*").stdout
    assert all(l.startswith("cutoffd ") for l in owners.splitlines()), owners
    box.sh("systemctl", "start", "cutoffd")
    assert healthz(box)[0] == 200
    box.sh("systemctl", "stop", "cutoffd")


def test_07_package_installs_starts_and_purges(box):
    debs = [p for p in sorted((ROOT / "build" / "deb").glob("cutoffd_*.deb"))]
    if not debs:
        pytest.skip("no package to test: `make deb` (run by .ci/run) builds "
                    "build/deb/cutoffd_*.deb")
    # what make install put there goes, the user too: the package alone
    box.sh("sh", "-c", "rm -rf /usr/sbin/cutoffd /usr/sbin/cutoffctl "
           "/lib/systemd/system/cutoffd.service /usr/lib/sysusers.d/cutoffd.conf "
           "/usr/lib/tmpfiles.d/cutoffd.conf /usr/share/cutoffd /etc/cutoffd "
           "/var/lib/cutoffd /etc/systemd/system/cutoffd.service.d; "
           "userdel cutoffd; systemctl daemon-reload")
    assert box.sh("id", "cutoffd", check=False).returncode != 0
    # no start at install: its port (8470) is not the test's
    rc_d = box.root / "usr/sbin/policy-rc.d"
    rc_d.write_text("#!/bin/sh\nexit 101\n")
    rc_d.chmod(0o755)
    # (/tmp in the container is a tmpfs of its own)
    shutil.copy(debs[-1], box.root / "root" / "cutoffd.deb")
    try:
        box.sh("dpkg", "-i", "/root/cutoffd.deb", timeout=120)
    finally:
        rc_d.unlink()
    assert box.sh("stat", "-c", "%U:%G %a", CONF).stdout.split() == \
        ["root:cutoffd", "640"]
    assert box.sh("systemctl", "is-enabled", "cutoffd").stdout.strip() == \
        "enabled"
    conf = box.root / CONF.lstrip("/")
    conf.write_text(conf.read_text().replace(
        "listen     = 127.0.0.1:8470", f"listen     = 127.0.0.1:{box.port}"))
    box.sh("systemctl", "start", "cutoffd")
    assert healthz(box)[0] == 200
    assert re.fullmatch(r"[0-9a-f]{48}\n",
                        box.sh("cutoffctl", "admin-token").stdout)
    box.sh("dpkg", "--purge", "cutoffd", timeout=120)
    for gone in ("/etc/cutoffd", "/var/lib/cutoffd", "/usr/sbin/cutoffd",
                 "/lib/systemd/system/cutoffd.service"):
        assert not (box.root / gone.lstrip("/")).exists(), gone
    assert healthz(box)[0] is None
    # Debian keeps system users after a purge (their uid may own files)
    assert box.sh("id", "cutoffd", check=False).returncode == 0
