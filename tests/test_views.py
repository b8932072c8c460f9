"""The status views come from memory (issue 7, item 2): /status.json, the
page and /status.csv are built once per change of configuration or state,
not per request, and every reader, slow ones included, shares one body.

The daemon marks each built document with `X-Cutoffd-Built: N` (its build
number): equal numbers are the same build served again."""
import socket
import statistics
import threading
import time

import pytest

from conftest import ADMIN_TOKEN, CYCLES, Daemon, http, make_config

NUNITS = 3000


def many_units(n):
    return "".join(
        f"\n[unit u{i:05d}]\nname = Ban Chỉ đạo phường {i}\n"
        f"email = u{i}@example.vn\ngroups = g{i % 10}\n" for i in range(n))


def start_big(tmp_path, port, n):
    conf = make_config(tmp_path, port, cycles=CYCLES, units=many_units(n))
    return Daemon(conf, port, now="2024-03-20T10:00").start(timeout=120)


@pytest.fixture
def big(tmp_path, port):
    d = start_big(tmp_path, port, NUNITS)
    yield d
    d.stop()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_healthz_while_status_json_is_fetched(big):
    st, h, body = big.get("/status.json")
    assert st == 200 and len(body) > 100_000
    first = h["X-Cutoffd-Built"]
    assert first

    stop = threading.Event()
    built, errors, fetched = set(), [], [0]

    def fetch():
        while not stop.is_set():
            s, hh, b = http("GET", big.base + "/status.json", timeout=30)
            if s != 200 or len(b) != len(body):
                errors.append(s)
            built.add(hh["X-Cutoffd-Built"])
            fetched[0] += 1

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    lat = []
    try:
        for _ in range(60):
            t0 = time.monotonic()
            s, _, _ = http("GET", big.base + "/healthz", timeout=30)
            lat.append(time.monotonic() - t0)
            assert s == 200
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    lat.sort()
    print(f"\n{NUNITS} units, {fetched[0]} /status.json fetches by 4 "
          f"clients: /healthz p50 {statistics.median(lat) * 1000:.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms (figures only, not asserted)")
    assert not errors
    # Not rebuilt per request: every fetch got the first build (a second
    # one at most, should the minute of the view's clock have turned).
    assert fetched[0] > 20
    assert len(built | {first}) <= 2, built

    # conditional GET: 304 with the same ETag
    s, h304, b = big.get("/status.json",
                         headers={"If-None-Match": h["ETag"]})
    assert s == 304 and b == b""

    # a change makes it stale: the next request sees it, built once
    s, _, _ = http("POST", big.base + "/api/submissions",
                   body=b'{"unit": "u00007", "occurrence": "q1/2024-03-13"}',
                   headers={"Authorization": "Bearer " + ADMIN_TOKEN,
                            "Content-Type": "application/json"})
    assert s == 201
    s, h2, b2 = big.get("/status.json")
    assert s == 200 and h2["X-Cutoffd-Built"] not in built | {first}
    assert b'"unit":"u00007","name":"Ban Ch' in b2
    assert h2["ETag"] != h["ETag"]
    s, h3, _ = big.get("/status.json")
    assert h3["X-Cutoffd-Built"] == h2["X-Cutoffd-Built"]


def test_slow_readers_share_one_body(tmp_path, port):
    """Clients that never read: the daemon keeps one body, not one each.
    The body must be larger than what the kernel buffers per socket (4 MB
    of send buffer at most here), else it all leaves user space."""
    big = start_big(tmp_path, port, 15000)
    try:
        st, h, body = big.get("/status.json")
        assert st == 200 and len(body) > 6 << 20
        before = rss_kb(big.proc.pid)
        socks = []
        try:
            for _ in range(20):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", big.port))
                s.sendall(b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(s)
            deadline = time.monotonic() + 30
            while (big.logtext().count("GET /status.json -> 200") < 21 and
                   time.monotonic() < deadline):
                time.sleep(0.1)
            assert http("GET", big.base + "/healthz")[0] == 200
            grown = (rss_kb(big.proc.pid) - before) * 1024
        finally:
            for s in socks:
                s.close()
        print(f"\nbody {len(body)} bytes, RSS grew {grown} bytes with 20 "
              "readers that never read")
        # 0.1 built a body per request: 20 of them would be resident now
        assert grown < 2 * len(body), grown
    finally:
        big.stop()


def test_csv(tmp_path, port):
    conf = make_config(tmp_path, port)
    d = Daemon(conf, port, now="2024-03-14T10:00").start()
    try:
        s, _, _ = http("POST", d.base + "/api/submissions",
                       body='{"unit": "tu-phap", "occurrence": '
                            '"q1/2024-03-13", "at": "2024-03-12T09:30", '
                            '"note": "đủ, \\"bản ký\\""}'.encode(),
                       headers={"Authorization": "Bearer " + ADMIN_TOKEN,
                                "Content-Type": "application/json"})
        assert s == 201
        st, h, body = d.get("/status.csv?cycle=q1")
        assert st == 200
        assert h["Content-Type"].startswith("text/csv; charset=utf-8")
        assert body.startswith(b"\xef\xbb\xbf")
        text = body[3:].decode("utf-8")
        lines = text.split("\r\n")
        assert lines[0] == ("occurrence,title,due,unit,name,state,"
                            "received,source,note")
        assert lines[-1] == ""
        assert ("q1/2024-03-13,Báo cáo quý I,13/03/2024,tu-phap,"
                "Phòng Tư pháp,submitted,12/03/2024 09:30,api,"
                '"đủ, ""bản ký"""') in lines
        assert ("q1/2024-03-13,Báo cáo quý I,13/03/2024,mttq,"
                "Ủy ban Mặt trận Tổ quốc Việt Nam Thành phố,missing,,,"
                ) in lines
        # the same access rule as /status.json
        assert d.get("/status.csv?cycle=nope")[0] == 400
        assert http("POST", d.base + "/status.csv")[0] == 405
    finally:
        d.stop()
