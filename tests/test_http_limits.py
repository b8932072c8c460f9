"""The HTTP side under hostile or heavy use, on real sockets: a burst that
fills every connection slot and then vanishes, a slow sender holding a
slot, many keep-alive clients behind one address, refusal logging."""
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import CUTOFFD, http, make_config

NOW = "2024-03-20T10:00"


def start(daemon_factory, tmp_path, port, extra=""):
    conf = make_config(tmp_path, port, extra_daemon=extra)
    return daemon_factory(conf, port, now=NOW).start()


def healthz(d, timeout=3):
    try:
        return http("GET", d.base + "/healthz", timeout=timeout)[0]
    except OSError:
        return None


def get_keepalive(sock, path="/healthz"):
    """One request on an open connection; returns the status code."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        got += chunk
    head, _, rest = got.partition(b"\r\n\r\n")
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        rest += chunk
    return int(head.split(b" ", 2)[1])


BURST = r"""
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.bind(("127.0.0.%d" % (2 + i % 8), 0))
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    socks.append(s)
time.sleep(2)       # let the server accept all it will
print("open", flush=True)
sys.stdin.readline()
# then the client simply exits: every socket closes at once
"""


def burst(d, n=600):
    """n sockets from 127.0.0.2-.9, more than every limit, then the client
    exits while the daemon is stopped (SIGSTOP), so that it sees every
    close in one go, as it does on a loaded machine."""
    p = subprocess.Popen([sys.executable, "-c", BURST, str(d.port), str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "open"
        d.signal(signal.SIGSTOP)
        p.stdin.close()
        assert p.wait(30) == 0
        time.sleep(0.3)
    finally:
        d.signal(signal.SIGCONT)
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_healthy(d, within=15):
    deadline = time.monotonic() + within
    st = None
    while time.monotonic() < deadline:
        st = healthz(d, timeout=2)
        if st == 200:
            return st
        time.sleep(0.2)
    return st


def test_burst_that_fills_every_slot_does_not_wedge(daemon_factory,
                                                    tmp_path, port):
    """Every slot filled, then all closed at once: at the limit MHD takes
    its listening socket out of epoll and puts it back only in a later
    MHD_run, which nothing called any more."""
    d = start(daemon_factory, tmp_path, port)
    burst(d)
    assert wait_healthy(d) == 200, \
        "no answer after the burst:\n" + d.logtext()[-2000:]
    for _ in range(5):      # not a one-off accept
        assert healthz(d) == 200
    burst(d)                # and a second time
    assert wait_healthy(d) == 200


def test_slow_sender_is_closed_and_others_are_served(daemon_factory,
                                                     tmp_path, port):
    """Slowloris: headers one byte a second (and a body the same way) keep
    MHD's inactivity timer fresh for ever; the request deadline (10 s)
    closes them while other clients are served."""
    d = start(daemon_factory, tmp_path, port)
    slow_head = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    slow_body = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow_body.sendall(b"POST /api/submissions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
    closed = {}
    t0 = time.monotonic()
    served = 0
    while time.monotonic() - t0 < 25 and len(closed) < 2:
        for name, s in (("head", slow_head), ("body", slow_body)):
            if name in closed:
                continue
            try:
                s.sendall(b"X" if name == "head" else b" ")
            except OSError:
                closed[name] = time.monotonic() - t0
                continue
            s.setblocking(False)
            try:
                if s.recv(4096) == b"":
                    closed[name] = time.monotonic() - t0
            except BlockingIOError:
                pass
            except OSError:
                closed[name] = time.monotonic() - t0
            s.setblocking(True)
        assert healthz(d) == 200
        served += 1
        time.sleep(1)
    slow_head.close()
    slow_body.close()
    d.stop()
    # one line for both, not one per connection
    lines = [ln for ln in d.logtext().splitlines() if "warning" in ln and
             "http:" in ln]
    assert len(lines) == 1, lines
    assert "closed 2 connections that sent no whole request" in lines[0]
    assert "head" in closed, "a dribbling header kept its connection 25 s"
    assert "body" in closed, "a dribbling body kept its connection 25 s"
    assert 8 <= closed["head"] <= 16, closed
    assert 8 <= closed["body"] <= 16, closed
    assert served >= 8


def test_64_keepalive_connections_from_one_address(daemon_factory, tmp_path,
                                                   port):
    """wrk -c64 or a reverse proxy: 64 persistent connections from
    127.0.0.1, each used for several requests, all served; no log line
    per connection."""
    d = start(daemon_factory, tmp_path, port)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
             for _ in range(64)]
    try:
        for _ in range(3):
            for s in socks:
                assert get_keepalive(s) == 200
            for s in socks:
                assert get_keepalive(s, "/calendar.ics") == 200
    finally:
        for s in socks:
            s.close()
    assert "refused" not in d.logtext()
    assert healthz(d) == 200


def test_refusals_logged_once_with_a_count(daemon_factory, tmp_path, port):
    d = start(daemon_factory, tmp_path, port,
              extra="max_connections_per_ip = 4")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
             for _ in range(4)]
    refused = 0
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                if s.recv(100) == b"":
                    refused += 1
            except ConnectionResetError:
                refused += 1
    assert refused == 40
    # another address is not affected
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        assert get_keepalive(s) == 200
    for s in socks:
        s.close()
    d.stop()
    lines = [ln for ln in d.logtext().splitlines() if "refused" in ln]
    # the first refusal is reported at once, the rest within the minute
    # (here: at stop), each line with its count
    assert 1 <= len(lines) <= 2, lines
    counts = [int(re.search(r"refused (\d+) connections", ln).group(1))
              for ln in lines]
    assert sum(counts) == 40, lines
    assert "max_connections_per_ip = 4" in lines[0]


@pytest.mark.parametrize("line", [
    "max_connections = 0", "max_connections = 5000",
    "max_connections_per_ip = x", "max_connections_per_ip = -1",
])
def test_bad_limits_name_file_and_line(tmp_path, port, line):
    conf = make_config(tmp_path, port, extra_daemon=line)
    r = subprocess.run([str(CUTOFFD), "-c", str(conf), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    lineno = conf.read_text().splitlines().index(line) + 1
    assert f"{conf}:{lineno}" in r.stderr, r.stderr
    assert "from 1 to 4096" in r.stderr


def test_limits_accepted(tmp_path, port):
    conf = make_config(tmp_path, port, extra_daemon="max_connections = 100\n"
                       "max_connections_per_ip = 10")
    r = subprocess.run([str(CUTOFFD), "-c", str(conf), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_clients_breaking_connections_do_not_flood_the_log(daemon_factory,
                                                           tmp_path, port):
    """Half a request and gone, 50 times: one counted line, not 50."""
    d = start(daemon_factory, tmp_path, port)
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            time.sleep(0.01)
    assert healthz(d) == 200
    d.stop()
    lines = [ln for ln in d.logtext().splitlines()
             if "warning" in ln and "http:" in ln]
    assert len(lines) <= 2, lines
    n = sum(int(m.group(1)) for ln in lines
            for m in [re.search(r"(\d+) connections broken", ln)] if m)
    assert 1 <= n <= 50, lines
