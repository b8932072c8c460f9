"""Edge cases of the notice pipeline and the daemon's life cycle: stop with
transfers stuck in flight, signals while stopping, reloads that remove or
move what pending rows point at, catch-up followed by temporary failures,
and cutoffctl's input checks."""
import signal
import socket
import sqlite3
import threading
import time

from conftest import CYCLES, UNITS, ctl, init_state, make_config
from test_notices import BEFORE, BadServer, smtp_mail, wait_for
from test_notices import smtp  # noqa: F401  (fixture)


def rows(tmp_path, where="1"):
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        return db.execute("select unit, step, audience, state, attempts, "
                          "last_error from outbox where " + where +
                          " order by id").fetchall()
    finally:
        db.close()


def stalled_daemon(daemon_factory, tmp_path, port, bad):
    """A daemon whose 4 reminders are stuck on a server that never talks."""
    conf = make_config(tmp_path, port,
                       mail=smtp_mail(bad.port, "timeout = 5m\n"))
    d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()
    wait_for(lambda: len(bad.conns) >= 4, what="4 stalled SMTP connections")
    return conf, d


def test_stop_with_stalled_transfers_keeps_rows_pending(daemon_factory,
                                                        tmp_path, port):
    bad = BadServer("stall")
    try:
        _, d = stalled_daemon(daemon_factory, tmp_path, port, bad)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(20)
        took = time.monotonic() - t0
        assert rc == 0, d.logtext()
        # none of their text went out (no greeting yet): no grace to wait
        assert took < 3, took
        got = rows(tmp_path)
        assert len(got) == 4
        # aborted, not attempted: sent again on the next start
        assert all(r[3] == "pending" and r[4] == 0 for r in got), got
        assert "stopped" in d.logtext()
    finally:
        bad.close()


class OneShotSMTP:
    """Takes one message per connection, then never answers again (not
    even QUIT): every idle cached connection is a stalled one."""

    def __init__(self, answer_dot=True):
        self.answer_dot = answer_dot
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.delivered, self.conns = 0, []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 oneshot ESMTP\r\n")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"DATA":
                    c.sendall(b"354 go on\r\n")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                    if not self.answer_dot:
                        self.delivered += 1   # taken, never confirmed
                        return
                    c.sendall(b"250 queued\r\n")
                    self.delivered += 1
                    return  # keep the socket open, say nothing more
                c.sendall(b"250 ok\r\n")
        except OSError:
            return

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def test_stop_with_idle_connections_to_a_stalled_server(daemon_factory,
                                                        tmp_path, port):
    srv = OneShotSMTP()
    try:
        conf = make_config(tmp_path, port, mail=smtp_mail(srv.port))
        d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()
        # a connection that delivered one message is now silent; the next
        # message may already ride on it (pipelined), waiting
        wait_for(lambda: len(rows(tmp_path, "state = 'sent'")) >= 1,
                 what="a reminder sent")
        time.sleep(0.5)
        delivered = srv.delivered
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(20)
        assert rc == 0 and time.monotonic() - t0 < 3, d.logtext()
        # nothing lost: what was not answered stays pending for the next
        # start; nothing marked sent that the server did not take
        states = [r[3] for r in rows(tmp_path)]
        assert len(states) == 4 and set(states) <= {"sent", "pending"}
        assert 1 <= states.count("sent") <= delivered
    finally:
        srv.close()


def test_stop_waits_for_an_unanswered_end_of_data(daemon_factory, tmp_path,
                                                  port):
    """A message whose text went out may have been delivered: the stop
    grants the server its grace (10 s) to say so; with no answer the rows
    stay pending, attempted never (sent again on the next start)."""
    srv = OneShotSMTP(answer_dot=False)
    try:
        _, d = graced_daemon(daemon_factory, tmp_path, port, srv)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(20)
        took = time.monotonic() - t0
        assert rc == 0, d.logtext()
        assert 9 <= took < 12, took
        got = rows(tmp_path)
        assert len(got) == 4 and all(r[3] == "pending" for r in got), got
    finally:
        srv.close()


def graced_daemon(daemon_factory, tmp_path, port, srv):
    """A daemon with a message whose text went out unanswered: its stop
    waits the grace."""
    conf = make_config(tmp_path, port, mail=smtp_mail(srv.port))
    d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()
    wait_for(lambda: srv.delivered >= 1, what="a text taken")
    return conf, d


def test_second_sigterm_exits_at_once(daemon_factory, tmp_path, port):
    srv = OneShotSMTP(answer_dot=False)
    try:
        _, d = graced_daemon(daemon_factory, tmp_path, port, srv)
        d.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert d.proc.poll() is None     # in its grace
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(20)
        assert rc == 0 and time.monotonic() - t0 < 2, d.logtext()
        assert all(r[3] == "pending" for r in rows(tmp_path))
    finally:
        srv.close()


def test_sighup_while_stopping_does_not_reload(daemon_factory, tmp_path,
                                               port):
    """A reload during the stop grace would re-announce READY and could
    start the HTTP server again."""
    srv = OneShotSMTP(answer_dot=False)
    try:
        conf, d = graced_daemon(daemon_factory, tmp_path, port, srv)
        d.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert d.proc.poll() is None
        d.signal(signal.SIGHUP)
        time.sleep(1)
        assert "reloaded:" not in d.logtext()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(20) == 0
    finally:
        srv.close()


def test_catch_up_row_is_retried_not_failed(daemon_factory, tmp_path, port,
                                            smtp):
    """After downtime the latest missed step is queued with a send time far
    in the past; a temporary failure must still be retried (give_up counts
    from when the row was queued, not from the missed send time)."""
    tries = {}

    def fail(msg):
        to = str(msg["To"])
        tries[to] = tries.get(to, 0) + 1
        return "451 4.3.0 try again later" if tries[to] == 1 else None

    sink = smtp(fail)
    mail = smtp_mail(sink.port).replace("give_up = 1d", "give_up = 2h")
    conf = make_config(tmp_path, port, mail=mail)
    d = daemon_factory(conf, port, now="2024-03-01T09:00").start()
    d.stop()
    # back on 14/03 at 11:00: escalate+1d (08:00) is the latest missed
    # step; give_up (2h) is already over for its planned time
    d = daemon_factory(conf, port, now="2024-03-14T11:00", speed=600).start()
    wait_for(lambda: len(sink.messages) >= 4, timeout=30, what="retried")
    d.stop()
    assert all(n == 2 for n in tries.values()), tries
    assert {r[3] for r in rows(tmp_path)} == {"sent"}


def test_reload_removing_unit_cancels_its_pending_rows(daemon_factory,
                                                       tmp_path, port, smtp):
    down = {"on": True}

    def fail(msg):
        return "451 4.3.0 try again later" if down["on"] else None

    sink = smtp(fail)
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()
    wait_for(lambda: len(rows(tmp_path, "attempts >= 1")) >= 4,
             what="4 deferred reminders")
    units = UNITS.replace(UNITS[UNITS.index("[unit mttq]"):
                                UNITS.index("[unit p-tan-loi]")], "")
    make_config(tmp_path, port, mail=smtp_mail(sink.port), units=units)
    d.reload()
    got = rows(tmp_path, "unit = 'mttq'")
    assert got and all(r[3] == "cancelled" for r in got), got
    down["on"] = False
    d2 = d
    d2.stop()
    # the server heals; the next start sends the 3 others, never mttq
    d = daemon_factory(conf, port, now="2024-03-06T09:00", speed=600).start()
    wait_for(lambda: len(sink.messages) >= 3, what="the other reminders")
    time.sleep(1)
    d.stop()
    assert sorted(r[0] for r, _ in sink.messages) \
        == ["bcd.tanloi@example.vn", "ldtbxh@example.vn", "tuphap@example.vn"]


def test_reload_moving_due_date(daemon_factory, tmp_path, port, smtp):
    """The old occurrence's pending rows are cancelled; the new date's
    steps are planned from now on."""
    down = {"on": True}

    def fail(msg):
        return "451 4.3.0 try again later" if down["on"] else None

    sink = smtp(fail)
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port))
    d = daemon_factory(conf, port, now="2024-03-06T07:59:59",
                       speed=60).start()
    wait_for(lambda: len(rows(tmp_path, "attempts >= 1")) >= 4,
             what="4 deferred reminders")
    # q1 moves to 15/03 (a Friday): remind-7d of the new date is 08/03
    make_config(tmp_path, port, mail=smtp_mail(sink.port),
                cycles=CYCLES.replace("due    = 03-13", "due    = 03-15"))
    d.reload()
    old = rows(tmp_path)
    assert all(r[3] == "cancelled" for r in old), old
    down["on"] = False
    d.stop()
    d = daemon_factory(conf, port, now="2024-03-08T07:59:50",
                       speed=10).start()
    wait_for(lambda: len(sink.messages) >= 4, what="reminders of the new date")
    time.sleep(1)
    d.stop()
    db = sqlite3.connect(tmp_path / "state.db")
    sent = db.execute("select occurrence, step from outbox "
                      "where state = 'sent'").fetchall()
    assert set(sent) == {("q1/2024-03-15", "remind-7d")}, sent
    assert len(sent) == 4


def test_received_in_the_same_second_as_the_send(daemon_factory, tmp_path,
                                                 port):
    """cutoffctl records tu-phap's report just before the daemon's clock
    reaches the reminder: tu-phap gets nothing, the others get theirs."""
    conf = make_config(tmp_path, port)
    d = daemon_factory(conf, port, now="2024-03-06T07:59:58").start()
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13",
            now="2024-03-06T07:59:59")
    assert r.returncode == 0, r.stderr
    new = tmp_path / "mail" / "new"
    wait_for(lambda: new.is_dir() and len(list(new.iterdir())) >= 3,
             what="3 reminders")
    time.sleep(1)
    d.stop()
    text = "".join(f.read_text(errors="replace") for f in new.iterdir())
    assert len(list(new.iterdir())) == 3
    assert "tuphap@example.vn" not in text


def test_cutoffctl_refuses_future_at_and_control_characters(conf, port):
    init_state(conf, port)
    now = "2024-03-12T10:00"
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13",
            "--at", "2024-03-20T10:00", now=now)
    assert r.returncode == 1 and "future" in r.stderr, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1
    for note in ("bell\x07", "esc \x1b[31mred", "c1 \u009b", "del\x7f"):
        r = ctl(conf, "received", "tu-phap", "q1/2024-03-13",
                "--note", note, now=now)
        assert r.returncode == 1 and "control" in r.stderr, (note, r.stderr)
    # nothing was recorded by the refused calls
    r = ctl(conf, "status", "q1/2024-03-13", now=now)
    assert "submitted 0/4" in r.stdout and "tu-phap\tnot-due" in r.stdout, \
        r.stdout
    # a multi-line note, a time a minute ahead (clock skew) are fine
    r = ctl(conf, "received", "tu-phap", "q1/2024-03-13", "--note",
            "dòng 1\ndòng 2", "--at", "2024-03-12T10:01", now=now)
    assert r.returncode == 0, r.stderr


def test_cutoffctl_check_with_extra_argument_says_why(conf):
    r = ctl(conf, "check", "extra")
    assert r.returncode == 1
    assert r.stderr.strip(), "a user error needs a one-line message"
