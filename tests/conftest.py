"""Black-box test harness: runs the real build/cutoffd and build/cutoffctl
on loopback with a temporary configuration and state store."""
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
CUTOFFD = BUILD / "cutoffd"
CUTOFFCTL = BUILD / "cutoffctl"
HOLIDAYS = ROOT / "conf" / "holidays-vn.ics"
TEMPLATES = ROOT / "conf" / "templates"
EXAMPLE = ROOT / "conf" / "city-2024.conf"  # a copy of the shared example
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(d, cn="127.0.0.1"):
    """A self-signed certificate (openssl from Debian) in directory d:
    (cert.pem, key.pem).  An address as cn is also its subjectAltName."""
    crt, key = Path(d) / "cert.pem", Path(d) / "key.pem"
    san = f"IP:{cn}" if cn[:1].isdigit() else f"DNS:{cn}"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName={san}"],
                   check=True, capture_output=True)
    return crt, key


def server_tls(d):
    """A server's TLS context on a fresh self-signed certificate in d."""
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*(str(p) for p in self_signed(d)))
    return ctx


UNITS = """
[unit ld-tbxh]
name   = Phòng Lao động - Thương binh và Xã hội
email  = ldtbxh@example.vn
head   = truongphong.ldtbxh@example.vn
groups = phong-ban

[unit tu-phap]
name   = Phòng Tư pháp
email  = tuphap@example.vn
head   = truongphong.tuphap@example.vn
groups = phong-ban

[unit mttq]
name   = Ủy ban Mặt trận Tổ quốc Việt Nam Thành phố
email  = mttq@example.vn
head   = chutich.mttq@example.vn
groups = doan-the

[unit p-tan-loi]
name    = Ban Chỉ đạo phường Tân Lợi
email   = bcd.tanloi@example.vn
head    = chutich.tanloi@example.vn
groups  = phuong-xa
"""

CYCLES = """
[policy standard]
at       = 08:00
remind   = -7d -3d -1d 0d
escalate = +1d head, +3d head secretariat, +7d chief
repeat   = 3d
until    = 30d
quiet    = 18:00-07:30
shift    = next-workday

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
period = 12-15 .. 03-13
policy = standard
units  = *

[cycle h1]
title  = Báo cáo sơ kết 6 tháng
due    = 06-13
period = 12-15 .. 06-13
policy = standard
units  = *

[cycle q3]
title  = Báo cáo quý III
due    = 09-13
period = 06-13 .. 09-13
policy = standard
units  = *

[cycle y]
title  = Báo cáo tổng kết năm
due    = 12-13
period = 12-15 .. 12-13
policy = standard
units  = *
"""


def make_config(tmp, port, extra_daemon="", mail=None, cycles=CYCLES,
                units=UNITS, webhook=""):
    """A complete configuration in tmp; returns its path."""
    tmp = Path(tmp)
    (tmp / "admin.token").write_text(ADMIN_TOKEN + "\n")
    if mail is None:
        mail = (f"transport = maildir\nmaildir = {tmp}/mail\n"
                "from = Thường trực Ban Chỉ đạo 138 <thuongtruc@example.vn>\n")
    # These tests start on dates after due dates of theirs; a fresh store
    # would otherwise chase (and list) nothing due before its first day.
    since = "" if "since" in extra_daemon else "since = 2023-01-01\n"
    text = f"""
[daemon]
timezone   = Asia/Ho_Chi_Minh
state      = state.db
listen     = 127.0.0.1:{port}
public_url = http://127.0.0.1:{port}
holidays   = {HOLIDAYS}
templates  = {TEMPLATES}
workdays   = mon-fri
admin_token_file = admin.token
{since}{extra_daemon}

[mail]
{mail}

[webhook]
{webhook}

[secretariat]
name  = Công an Thành phố - Thường trực Ban Chỉ đạo
email = thuongtruc@example.vn
chief = truongban@example.vn
{cycles}
{units}
"""
    path = tmp / "cutoffd.conf"
    path.write_text(text)
    return path


def http(method, url, body=None, headers=None, timeout=10):
    """(status, headers, body bytes) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Daemon:
    def __init__(self, conf, port, now=None, speed=None, env=None,
                 wrapper=None):
        self.conf = Path(conf)
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = self.conf.parent / "cutoffd.log"
        args = [str(CUTOFFD), "-c", str(self.conf), "-v"]
        if now:
            args += ["--now", now]
        if speed:
            args += ["--speed", str(speed)]
        self.args = (wrapper or []) + args
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def start(self, wait=True, timeout=30):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"cutoffd exited {self.proc.returncode}:"
                                     f"\n{self.logtext()}")
            try:
                st, _, _ = http("GET", self.base + "/healthz", timeout=2)
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("cutoffd did not become ready:\n" + self.logtext())

    def logtext(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path, headers=None):
        return http("GET", self.base + path, headers=headers)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def _reloads(self):
        text = self.logtext()
        return text.count("reloaded:") + text.count("not reloading")

    def reload(self):
        """SIGHUP, then wait until the log shows the outcome."""
        before = self._reloads()
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._reloads() > before:
                return self.logtext()
            time.sleep(0.05)
        raise AssertionError("reload not logged:\n" + self.logtext())

    def stop(self, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("cutoffd did not stop:\n" + self.logtext())
        self.log.close()
        return rc


def init_state(conf, port, now=None):
    """Creates the state store as an installation does, by the daemon's
    first start (cutoffctl never creates one)."""
    d = Daemon(conf, port, now=now)
    d.start()
    assert d.stop() == 0, d.logtext()


def ctl(conf, *args, now=None):
    cmd = [str(CUTOFFCTL), "-c", str(conf)]
    if now:
        cmd += ["--now", now]
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def conf(tmp_path, port):
    return make_config(tmp_path, port)


@pytest.fixture
def daemon_factory():
    started = []

    def make(conf, port, **kw):
        d = Daemon(conf, port, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
