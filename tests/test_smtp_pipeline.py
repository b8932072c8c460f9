"""smtp.c's mail transactions against real aiosmtpd servers on loopback:
PIPELINING (RFC 2920) and lockstep, servers that close or drop the
connection mid-session, dot-stuffing, an end of data that is never
answered, malformed, split and multi-line replies, silent servers,
STARTTLS, refused senders and recipients, a reload to another server,
servers that limit or refuse connections.

aiosmtpd reads pipelined commands correctly but does not announce
PIPELINING; `Piped` adds the keyword through its handle_EHLO hook.  What
the client really put on the wire is seen by `Tap`, a small TCP relay in
front of the server that keeps every read of the client's bytes: a read
that holds several commands is pipelining, and without PIPELINING no read
may hold more than one (the client waits for each reply).  What one
system call carries, a relay cannot tell (two writes may arrive as one
read): that is read from the daemon's own calls under strace."""
import asyncio
import os
import re
import shutil
import signal
import threading
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from conftest import TEMPLATES, free_port, make_config, server_tls
from test_notices_smtp import Sink, rows, smtp_mail, start_sink, wait_for

BEFORE = "2024-03-06T07:59:59"   # the -7d reminders go out one second later

ONE_STEP = """
[policy once]
at     = 08:00
remind = -7d

[cycle q1]
title  = Báo cáo quý I
due    = 03-13
period = 12-15 .. 03-13
policy = once
units  = *
"""


def many_units(n):
    return "".join(f"""
[unit u{i:02d}]
name   = Phòng số {i:02d}
email  = u{i:02d}@example.vn
head   = head{i:02d}@example.vn
groups = phong-ban
""" for i in range(n))


def piped_mail(port, parallel, extra=""):
    return smtp_mail(f"smtp://127.0.0.1:{port}",
                     f"starttls = no\nparallel = {parallel}\n" + extra)


class Piped(Sink):
    """A Sink whose EHLO announces PIPELINING (pipelining=True)."""

    def __init__(self, pipelining=True, **kw):
        super().__init__(**kw)
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        # with this hook aiosmtpd leaves the greeting's bookkeeping to us
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses


async def _hang_up(server):
    """Drops the TCP connection without a word and never answers."""
    server.transport.abort()
    await asyncio.Event().wait()      # cancelled by connection_lost


class Tap:
    """A TCP relay to `upstream` that records each read of the client's
    bytes, per connection."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.conns, self.closed = [], 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", 0),
            self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _reply(self, w, b):
        """Passes a piece of the server's replies on."""
        w.write(b)
        await w.drain()

    async def _client(self, cr, cw):
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        reads = []
        self.conns.append(reads)

        async def pump(r, w, keep):
            try:
                while True:
                    b = await r.read(65536)
                    if not b:
                        break
                    if keep is not None:
                        keep.append(b)
                        w.write(b)
                        await w.drain()
                    else:
                        await self._reply(w, b)
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pump(cr, uw, reads), pump(ur, cw, None))
        self.closed += 1

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def commands_per_read(reads):
    """For each read of one connection: the commands it completes.  The
    text after DATA (every DATA here is accepted) up to "." is no
    command.  Also: whether a read held an end of data and then a MAIL
    (the next message riding with the current one's text)."""
    counts, rides = [], 0
    data, pending = False, b""
    for chunk in reads:
        lines = (pending + chunk).split(b"\r\n")
        pending = lines.pop()
        n, dot = 0, False
        for line in lines:
            if data:
                if line == b".":
                    data, dot = False, True
                continue
            n += 1
            if dot and line.upper().startswith(b"MAIL FROM:"):
                rides += 1
                dot = False
            if line.upper() == b"DATA":
                data = True
        counts.append(n)
    return counts, rides


def delivered_once(tmp_path, sink):
    """Every email row is sent, and its message reached the server exactly
    once, to the unit's address, with a body that decodes."""
    outbox = rows(tmp_path, "select unit, message_id, state, recipients "
                  "from outbox where channel = 'email'")
    assert outbox
    got = {}
    for rcpts, msg in sink.messages:
        got.setdefault(msg["Message-ID"], []).append((rcpts, msg))
    for unit, mid, st, recipients in outbox:
        assert st == "sent", (unit, st)
        assert len(got.get(mid, [])) == 1, (unit, mid, len(got.get(mid, [])))
        (rcpts, msg), = got[mid]
        assert rcpts == [recipients] == [f"{unit}@example.vn"]
        body = msg.get_body(("plain",)).get_content()
        assert "Kính gửi: Phòng số " + unit[1:] in body, body
        assert body.rstrip().endswith("remind-7d).")
    # nothing else reached the server
    assert len(sink.messages) == len(outbox)
    return outbox


def all_sent(tmp_path):
    r = rows(tmp_path, "select count(*), sum(state = 'sent') from outbox")
    return r[0][0] > 0 and r[0][0] == r[0][1]


def own_templates(tmp_path, conf, text):
    """conf then reads a copy of the templates whose reminder body begins
    with `text`."""
    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATES, tdir)
    for lang in ("vi", "en"):
        f = tdir / lang / "remind.txt"
        head, _, body = f.read_text().partition("\n\n")
        f.write_text(head + "\n\n" + text + "\n" + body)
    old = conf.read_text()
    assert f"templates  = {TEMPLATES}\n" in old
    conf.write_text(old.replace(f"templates  = {TEMPLATES}\n",
                                f"templates  = {tdir}\n"))


def start_tls_sink(sink, tmp_path):
    """start_sink, with STARTTLS (required) on a self-signed certificate."""
    ctx = server_tls(tmp_path)
    sink.port = free_port()
    sink.controller = Controller(sink, hostname="127.0.0.1", port=sink.port,
                                 require_starttls=True, tls_context=ctx)
    sink.controller.start()
    return sink


# -------------------------------------------------- pipelining and lockstep

@pytest.mark.parametrize("pipelining", [True, False],
                         ids=["pipelining", "lockstep"])
def test_many_notices_pipelined_or_lockstep(daemon_factory, tmp_path, port,
                                            pipelining):
    sink = start_sink(Piped(pipelining=pipelining))
    tap = Tap(sink.port)
    try:
        conf = make_config(tmp_path, port, units=many_units(40),
                           cycles=ONE_STEP, mail=piped_mail(tap.port, 4))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: len(sink.messages) >= 40, what="40 notices")
        wait_for(lambda: all_sent(tmp_path), what="every row sent")
        d.stop()
        assert len(delivered_once(tmp_path, sink)) == 40
        assert 2 <= len(tap.conns) <= 4, len(tap.conns)   # parallel = 4
        per = [commands_per_read(r) for r in tap.conns]
        most = max(max(c) for c, _ in per)
        rides = sum(r for _, r in per)
        if pipelining:
            # MAIL, RCPT, DATA together; and the next message's behind the
            # current one's end of data
            assert most >= 3, per
            assert rides >= 1, per
        else:
            assert most == 1, per
            assert rides == 0
    finally:
        tap.stop()
        sink.controller.stop()


# ------------------------------------------------- what one write carries

SYSCALL = re.compile(rb'^(?:sendto|write)\((\d+), "((?:\\x[0-9a-f]{2})*)"')


def smtp_writes(prefix):
    """The daemon's writes to its SMTP connections, from `strace -ff -xx`
    files: per connection (from its EHLO on), the bytes of each call."""
    conns = []
    for f in sorted(prefix.parent.glob(prefix.name + ".*")):
        fds = {}
        for line in f.read_bytes().splitlines():
            m = SYSCALL.match(line)
            if not m:
                continue
            fd = int(m.group(1))
            data = bytes.fromhex(m.group(2).replace(b"\\x", b"").decode())
            if data.startswith(b"EHLO "):
                fds[fd] = [data]
                conns.append(fds[fd])
            elif fd in fds:
                fds[fd].append(data)
    return conns


def traced(daemon_factory, conf, port, prefix):
    """The daemon under strace, its writes into prefix.PID files."""
    return daemon_factory(conf, port, now=BEFORE, wrapper=[
        "strace", "-ff", "-xx", "-s", "1000000", "-e", "trace=sendto,write",
        "-o", str(prefix)]).start()


def traced_stop(d):
    # the stop goes to the daemon: strace keeps a SIGTERM of its own
    pid = d.proc.pid
    child, = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(int(child), signal.SIGTERM)
    assert d.proc.wait(30) == 0, d.logtext()
    d.log.close()


GROUP = re.compile(rb"MAIL FROM:<[^>]*>[^\r]*\r\n(RCPT TO:<[^>]*>\r\n)+"
                   rb"DATA\r\n")


@pytest.mark.skipif(shutil.which("strace") is None, reason="no strace")
def test_pipelined_commands_leave_in_one_write(daemon_factory, tmp_path,
                                               port):
    """With PIPELINING a message's MAIL, RCPT and DATA go out in one
    system call, and the next message's ride in the call that carries the
    current one's text and end of data: seen in the daemon's own writes
    (a TCP reader cannot tell two writes that came together from one)."""
    sink = start_sink(Piped())
    try:
        conf = make_config(tmp_path, port, units=many_units(12),
                           cycles=ONE_STEP, mail=piped_mail(sink.port, 2))
        prefix = tmp_path / "strace"
        d = traced(daemon_factory, conf, port, prefix)
        wait_for(lambda: all_sent(tmp_path), what="every row sent")
        traced_stop(d)
        delivered_once(tmp_path, sink)
        conns = smtp_writes(prefix)
        assert conns, os.listdir(tmp_path)
        groups = rides = 0
        for writes in conns:
            for w in writes:
                n = w.count(b"MAIL FROM:")
                # every MAIL in a write comes with its RCPT and DATA
                assert len(GROUP.findall(w)) == n, w[-300:]
                groups += n
                if n and w.startswith(b"MAIL FROM:"):
                    assert w.count(b"MAIL FROM:") == 1
                elif n:
                    assert b"\r\n.\r\nMAIL FROM:" in w, w[-300:]
                    rides += 1
        assert groups == 12
        assert rides >= 1
    finally:
        sink.controller.stop()


# ------------------------------------------- servers that close or hang up

class Closing(Piped):
    """After `n` messages on a connection the server goes: at the next MAIL
    FROM (where="mail"), with a 421 (how="421") or by dropping the
    connection without a reply ("drop"); or with a 421 to the next end of
    data ("dot"), when that message's text and the one behind it (with
    PIPELINING) went out already."""

    def __init__(self, n, how, where, **kw):
        super().__init__(**kw)
        self.n, self.how, self.where, self.cut = n, how, where, 0

    async def _close(self, server):
        self.cut += 1
        if self.how == "421":
            return "421 4.3.2 Service shutting down, try again"
        await _hang_up(server)

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        if self.where == "mail" and getattr(session, "done", 0) >= self.n:
            return await self._close(server)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        done = getattr(session, "done", 0)
        if self.where == "dot" and done >= self.n:
            return await self._close(server)
        session.done = done + 1
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("how,where,pipelining", [
    ("421", "mail", True), ("drop", "mail", True), ("421", "dot", True),
    ("421", "mail", False), ("drop", "mail", False), ("421", "dot", False)])
def test_server_closing_loses_and_doubles_nothing(daemon_factory, tmp_path,
                                                  port, how, where,
                                                  pipelining):
    sink = start_sink(Closing(3, how, where, pipelining=pipelining))
    try:
        conf = make_config(tmp_path, port, units=many_units(20),
                           cycles=ONE_STEP, mail=piped_mail(sink.port, 3))
        # 600x: the 10-minute backoff of a message that met two closing
        # connections is one real second
        d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
        wait_for(lambda: all_sent(tmp_path), timeout=60,
                 what="every row sent")
        log = d.logtext()
        d.stop()
        assert len(delivered_once(tmp_path, sink)) == 20
        assert sink.cut >= 3, sink.cut       # the server did close
        # nothing the server refused or never answered was taken for a
        # message that may have been delivered
        assert "may have been delivered" not in log, log
    finally:
        sink.controller.stop()


# ------------------------------------------------------------ dot-stuffing

DOT_LINES = [".", "..", ". Mục một.", ".Kết thúc giữa chừng", "x" * 75 + ".sau"]


def test_lines_starting_with_a_dot_arrive_intact(daemon_factory, tmp_path,
                                                 port):
    sink = start_sink(Piped())
    try:
        conf = make_config(tmp_path, port, units=many_units(3),
                           cycles=ONE_STEP, mail=piped_mail(sink.port, 1))
        own_templates(tmp_path, conf, "\n".join(DOT_LINES))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: all_sent(tmp_path), what="every row sent")
        d.stop()
        delivered_once(tmp_path, sink)
        assert len(sink.messages) == 3
        for _, msg in sink.messages:
            # the wire form (quoted-printable) keeps the dots at the start
            # of lines; the last one begins a soft-broken line's second half
            raw = msg.as_bytes().replace(b"\r\n", b"\n")
            assert b"\n.\n" in raw and b"\n.sau\n" in raw, raw
            lines = msg.get_body(("plain",)).get_content().splitlines()
            i = lines.index(".")
            assert lines[i:i + len(DOT_LINES)] == DOT_LINES, lines
    finally:
        sink.controller.stop()


# ------------------------------------------- an end of data never answered

class Dying(Piped):
    """Reads the text of the first message it gets (the victim's), then
    drops the connection without answering its end of data; so again for
    each of the victim's messages until `dying` is cleared."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.victim, self.dying, self.deaths = None, True, 0

    async def handle_DATA(self, server, session, envelope):
        if self.victim is None:
            self.victim = envelope.rcpt_tos[0]
        if self.dying and envelope.rcpt_tos == [self.victim]:
            self.deaths += 1
            await _hang_up(server)
        return await super().handle_DATA(server, session, envelope)


def test_unanswered_end_of_data_is_deferred_then_retried(daemon_factory,
                                                         tmp_path, port):
    sink = start_sink(Dying())
    try:
        # one connection: the second message's MAIL, RCPT and DATA ride
        # with the victim's text, so they were sent and never answered
        # either: that message must move to a new connection, the victim
        # (whose text went out) must not
        conf = make_config(tmp_path, port, units=many_units(2),
                           cycles=ONE_STEP, mail=piped_mail(sink.port, 1))
        d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
        wait_for(lambda: sink.victim, what="the first message")
        victim = sink.victim.split("@")[0]
        other = ({"u00", "u01"} - {victim}).pop()

        def deferred():
            r = rows(tmp_path, "select state, attempts, last_error from "
                     "outbox where unit = ?", victim)
            return r[0] if r and r[0][1] >= 1 else None
        st, attempts, err = wait_for(deferred, what="the victim deferred")
        wait_for(lambda: rows(tmp_path, "select state from outbox where "
                              "unit = ?", other)[0][0] == "sent",
                 what="the other notice sent")
        log = d.logtext()
        # the server may have it: not sent, not failed, tried again later
        assert st == "pending" and sink.deaths >= 1
        assert "may have been delivered" in err, err
        assert re.search(r"notice deferred \(attempt 1, next try at [^)]*\): "
                         r"q1/2024-03-13 " + victim + r" remind-7d unit email "
                         r"to " + victim + r"@example\.vn <[^>]+>: .*may have "
                         r"been delivered", log), log
        assert f"notice sent: q1/2024-03-13 {victim}" not in log
        assert [r for r, _ in sink.messages] == [[f"{other}@example.vn"]]

        # the server heals: the backoff's retry delivers it, once
        sink.dying = False
        wait_for(lambda: all_sent(tmp_path), timeout=60,
                 what="the retry delivered")
        log = d.logtext()
        d.stop()
        delivered_once(tmp_path, sink)
        att = dict(rows(tmp_path, "select unit, attempts from outbox"))
        assert att[victim] >= 2
        # each death was one deferral: a text that went out is never sent
        # again on another connection at once
        assert log.count("notice deferred") == sink.deaths == \
            att[victim] - 1
        # the other went on the first try, on a new connection
        assert att[other] == 1
    finally:
        sink.controller.stop()


# ----------------------------------------------------- malformed replies

class Garbled(Piped):
    """Answers MAIL FROM ("mail") or the end of data ("dot") with a line
    that is no SMTP reply, until `garble` is cleared."""

    def __init__(self, where, line, **kw):
        super().__init__(**kw)
        self.where, self.line, self.garble = where, line, True

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        if self.garble and self.where == "mail":
            return self.line
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.garble and self.where == "dot":
            return self.line
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("where,line,sent", [
    ("mail", "25O ok", False),
    ("dot", "Ok: queued as 4XyZ12", True),
])
def test_malformed_reply_defers_with_a_clear_error(daemon_factory, tmp_path,
                                                   port, where, line, sent):
    sink = start_sink(Garbled(where, line))
    try:
        conf = make_config(tmp_path, port, units=many_units(1),
                           cycles=ONE_STEP, mail=piped_mail(sink.port, 2))
        d = daemon_factory(conf, port, now=BEFORE, speed=600).start()

        def deferred():
            r = rows(tmp_path, "select state, attempts, last_error "
                     "from outbox")
            return r[0] if r and r[0][1] >= 1 else None
        st, _, err = wait_for(deferred, what="the deferral")
        log = d.logtext()
        assert st == "pending", (st, err)
        assert "malformed server reply" in err and line in err, err
        assert ("may have been delivered" in err) == sent, err
        assert re.search(r"notice deferred \(attempt 1, .* u00 remind-7d .*"
                         r"malformed server reply", log), log
        st, _, _ = d.get("/healthz")
        assert st == 200
        assert d.proc.poll() is None

        # and mail goes on once the server makes sense
        sink.garble = False
        wait_for(lambda: all_sent(tmp_path), timeout=60,
                 what="the retry delivered")
        d.stop()
        delivered_once(tmp_path, sink)
    finally:
        sink.controller.stop()


# ------------------------------------- replies in pieces, replies in lines

class Dribble(Tap):
    """Passes the server's replies on a byte at a time: a reply arrives in
    many reads, several replies' pieces in one."""

    async def _reply(self, w, b):
        for i in range(len(b)):
            w.write(b[i:i + 1])
            await w.drain()
            await asyncio.sleep(0.0002)


class Multiline(Piped):
    """Answers MAIL, RCPT and the end of data in several lines."""

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250-Sender looks fine\r\n250-really\r\n250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250-Recipient\r\n250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        await super().handle_DATA(server, session, envelope)
        return "250-Thanks\r\n250 2.0.0 Ok: queued as M" + \
            str(len(self.messages))


def test_replies_in_pieces_and_in_several_lines(daemon_factory, tmp_path,
                                                port):
    sink = start_sink(Multiline())
    tap = Dribble(sink.port)
    try:
        conf = make_config(tmp_path, port, units=many_units(8),
                           cycles=ONE_STEP, mail=piped_mail(tap.port, 2))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: all_sent(tmp_path), timeout=60,
                 what="every row sent")
        log = d.logtext()
        d.stop()
        assert len(delivered_once(tmp_path, sink)) == 8
        # the reply logged is the last line of the end of data's
        queued = re.findall(r"notice sent: .*: 250 2\.0\.0 Ok: queued as "
                            r"M(\d+)$", log, re.M)
        assert sorted(map(int, queued)) == list(range(1, 9)), log
        per = [commands_per_read(r) for r in tap.conns]
        assert max(max(c) for c, _ in per) >= 3, per
    finally:
        tap.stop()
        sink.controller.stop()


# ------------------------------------------ refused addresses, pipelined

def test_refused_addresses_in_a_pipelined_session(daemon_factory, tmp_path,
                                                  port):
    """A transaction whose every address is refused leaves MAIL open: the
    next one on the connection must begin with RSET (aiosmtpd answers a
    second MAIL with "503 nested MAIL command")."""
    refuse = {"u03@example.vn": "550 5.1.1 no such user",
              "u07@example.vn": "451 4.2.0 mailbox busy"}
    sink = start_sink(Piped(refuse=refuse))
    tap = Tap(sink.port)
    try:
        conf = make_config(tmp_path, port, units=many_units(12),
                           cycles=ONE_STEP, mail=piped_mail(tap.port, 2))
        d = daemon_factory(conf, port, now=BEFORE).start()

        def settled():
            r = dict(rows(tmp_path, "select unit, state from outbox"))
            ok = all(st == "sent" for u, st in r.items()
                     if u not in ("u03", "u07"))
            return r if len(r) == 12 and ok and r["u03"] == "failed" and \
                rows(tmp_path, "select attempts from outbox where "
                     "unit = 'u07'")[0][0] >= 1 else None
        st = wait_for(settled, what="every row settled")
        d.stop()
        assert st["u07"] == "pending"
        got = sorted(r[0] for r, _ in sink.messages)
        assert got == [f"u{i:02d}@example.vn" for i in range(12)
                       if i not in (3, 7)]
        assert len({m["Message-ID"] for _, m in sink.messages}) == 10
        assert dict(rows(tmp_path, "select address, reply from "
                         "outbox_refused")) == refuse
        errs = dict(rows(tmp_path, "select unit, last_error from outbox "
                         "where unit in ('u03', 'u07')"))
        assert "550 5.1.1 no such user" in errs["u03"], errs
        assert "451 4.2.0 mailbox busy" in errs["u07"], errs
        sent = b"".join(b"".join(r) for r in tap.conns).upper()
        assert b"RSET\r\n" in sent
        per = [commands_per_read(r) for r in tap.conns]
        assert max(max(c) for c, _ in per) >= 3, per
    finally:
        tap.stop()
        sink.controller.stop()


# ---------------------------------------------------------- large messages

BIG = "Đề nghị các đơn vị gửi báo cáo đúng hạn, đầy đủ số liệu. " * 700


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_large_messages(daemon_factory, tmp_path, port, tls):
    """Texts of some 130 kB (quoted-printable Vietnamese), plain and in TLS
    (records of 16 kB; libcurl's TLS under curl_easy_send), pipelined."""
    sink = start_tls_sink(Piped(), tmp_path) if tls else start_sink(Piped())
    tap = Tap(sink.port)
    try:
        extra = "starttls = required\ntls_verify = no\n" if tls else ""
        mail = piped_mail(tap.port, 2, extra).replace("starttls = no\n", "")
        conf = make_config(tmp_path, port, units=many_units(8),
                           cycles=ONE_STEP, mail=mail)
        own_templates(tmp_path, conf, BIG)
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: all_sent(tmp_path), timeout=60,
                 what="every row sent")
        d.stop()
        delivered_once(tmp_path, sink)
        for _, msg in sink.messages:
            assert BIG.strip() in msg.get_body(("plain",)).get_content()
        wire = sum(len(b) for r in tap.conns for b in r)
        assert wire > 8 * len(BIG.encode())
        if not tls:
            assert max(max(commands_per_read(r)[0]) for r in tap.conns) >= 3
    finally:
        tap.stop()
        sink.controller.stop()


# ------------------------------------------------- idle and silent servers

TWO_SENDS = ONE_STEP + """
[policy later]
at     = 08:05
remind = -7d

[cycle q1b]
title  = Báo cáo bổ sung quý I
due    = 03-13
period = 12-15 .. 03-13
policy = later
units  = *
"""


class Counting(Piped):
    """Counts the sessions (EHLOs)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        self.sessions += 1
        return await super().handle_EHLO(server, session, envelope,
                                         hostname, responses)


def test_connections_the_server_closed_when_idle_are_not_used(
        daemon_factory, tmp_path, port):
    """The server drops connections idle for a second (as servers do, long
    before cutoffd's own 30 s): the next mails go on new connections, none
    is lost to a dead one."""
    sink = Counting()
    sink.port = free_port()
    sink.controller = Controller(sink, hostname="127.0.0.1", port=sink.port,
                                 timeout=1)
    sink.controller.start()
    try:
        conf = make_config(tmp_path, port, units=many_units(4),
                           cycles=TWO_SENDS, mail=piped_mail(sink.port, 2))
        # 60x: the 08:05 send comes five real seconds after the first
        d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
        wait_for(lambda: len(sink.messages) >= 4, what="the first send")
        first = sink.sessions
        wait_for(lambda: rows(tmp_path, "select count(*) from outbox where "
                              "state = 'sent'")[0][0] == 8, timeout=40,
                 what="the second send")
        log = d.logtext()
        d.stop()
        assert len(delivered_once(tmp_path, sink)) == 8
        assert sink.sessions > first        # new connections, after idle
        assert "notice deferred" not in log, log
    finally:
        sink.controller.stop()


class Silent(Piped):
    """Never answers MAIL FROM (where="mail") or the end of data ("dot")."""

    def __init__(self, where, **kw):
        super().__init__(**kw)
        self.where, self.hung = where, 0

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        if self.where == "mail":
            self.hung += 1
            await asyncio.Event().wait()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.where == "dot":
            self.hung += 1
            await asyncio.Event().wait()
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("where,sent", [("mail", False), ("dot", True)])
def test_a_server_that_stops_answering_times_out(daemon_factory, tmp_path,
                                                 port, where, sent):
    sink = start_sink(Silent(where))
    try:
        conf = make_config(tmp_path, port, units=many_units(1),
                           cycles=ONE_STEP,
                           mail=piped_mail(sink.port, 1, "timeout = 1s\n"))
        d = daemon_factory(conf, port, now=BEFORE).start()

        def deferred():
            r = rows(tmp_path, "select state, attempts, last_error "
                     "from outbox")
            return r[0] if r and r[0][1] >= 1 else None
        st, _, err = wait_for(deferred, what="the deferral")
        st_h, _, _ = d.get("/healthz")
        d.stop()
        assert st == "pending" and st_h == 200
        assert "timed out waiting for the server" in err, err
        assert ("may have been delivered" in err) == sent, err
        # an unsent message gets a second connection, a sent one does not
        assert sink.hung == (1 if sent else 2)
        assert sink.messages == []
    finally:
        sink.controller.stop()


# ------------------------------------------------ a reload with a new server

def test_a_reload_moves_mail_to_the_new_server(daemon_factory, tmp_path,
                                               port):
    """A reload that changes the server: connections to the old one finish
    and close, the next mail goes to the new one, though every connection
    slot (parallel = 1) was taken by an idle connection to the old, and
    no other mail follows to set things moving."""
    old, new = start_sink(Piped()), start_sink(Piped())
    try:
        conf = make_config(tmp_path, port, units=many_units(1),
                           cycles=TWO_SENDS, mail=piped_mail(old.port, 1))
        d = daemon_factory(conf, port, now=BEFORE, speed=60).start()
        wait_for(lambda: len(old.messages) >= 1, what="the first send")
        text = conf.read_text()
        conf.write_text(text.replace(f"smtp://127.0.0.1:{old.port}",
                                     f"smtp://127.0.0.1:{new.port}"))
        assert "reloaded" in d.reload()
        # the 08:05 send, five real seconds after the first
        wait_for(lambda: len(new.messages) >= 1, timeout=30,
                 what="the second send, to the new server")
        wait_for(lambda: all_sent(tmp_path), what="every row sent")
        d.stop()
        assert len(old.messages) == 1 and len(new.messages) == 1
        firsts = {m["Message-ID"] for _, m in old.messages}
        seconds = {m["Message-ID"] for _, m in new.messages}
        assert len(firsts | seconds) == 2
    finally:
        old.controller.stop()
        new.controller.stop()


class Lenient(Piped):
    """Refuses u01's RCPT yet answers DATA with 354 (RFC 2920 3.1: the
    client then sends the end of data alone); records what DATA got."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.contents = []

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        envelope.rcpt_tos.append(address)    # DATA is not refused then
        if address == "u01@example.vn":
            return "550 5.1.1 no such user"
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.contents.append((list(envelope.rcpt_tos), envelope.content))
        if envelope.rcpt_tos == ["u01@example.vn"]:
            return "554 5.5.1 no valid recipients"
        return await super().handle_DATA(server, session, envelope)


def test_data_accepted_after_every_address_refused(daemon_factory, tmp_path,
                                                   port):
    sink = start_sink(Lenient())
    try:
        conf = make_config(tmp_path, port, units=many_units(3),
                           cycles=ONE_STEP, mail=piped_mail(sink.port, 1))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: dict(rows(tmp_path, "select unit, state from "
                                   "outbox")) == {"u00": "sent",
                                                  "u01": "failed",
                                                  "u02": "sent"},
                 what="the outcomes")
        d.stop()
        # no text went to the refused address's transaction
        assert (["u01@example.vn"], b"") in sink.contents, sink.contents
        assert len(sink.contents) == 3
        (err,), = rows(tmp_path, "select last_error from outbox where "
                       "unit = 'u01'")
        assert "550 5.1.1 no such user" in err, err
        assert rows(tmp_path, "select address from outbox_refused") == \
            [("u01@example.vn",)]
        assert sorted(r[0] for r, _ in sink.messages) == \
            ["u00@example.vn", "u02@example.vn"]
    finally:
        sink.controller.stop()


class PlainOnly(Piped):
    """Announces PIPELINING in clear only: after STARTTLS the EHLO that
    counts has no such keyword (pipelining = "clear"); or in both."""

    def __init__(self, both, **kw):
        super().__init__(**kw)
        self.both = both

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        if self.both or session.ssl is None:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses


@pytest.mark.skipif(shutil.which("strace") is None, reason="no strace")
@pytest.mark.parametrize("both", [True, False], ids=["tls-too", "clear-only"])
def test_pipelining_is_what_the_ehlo_after_starttls_says(daemon_factory,
                                                         tmp_path, port,
                                                         both):
    """RFC 3207: after STARTTLS the client forgets what it knew and the
    new EHLO's keywords count.  Inside TLS the daemon's writes are
    records: one per curl_easy_send, so counted they show lockstep (four
    or more a message: MAIL, RCPT, DATA, the text) from pipelining (one or
    two)."""
    sink = start_tls_sink(PlainOnly(both), tmp_path)
    try:
        mail = piped_mail(sink.port, 2, "starttls = required\n"
                          "tls_verify = no\n").replace("starttls = no\n", "")
        conf = make_config(tmp_path, port, units=many_units(12),
                           cycles=ONE_STEP, mail=mail)
        d = traced(daemon_factory, conf, port, tmp_path / "strace")
        wait_for(lambda: all_sent(tmp_path), what="every row sent")
        traced_stop(d)
        delivered_once(tmp_path, sink)
        conns = smtp_writes(tmp_path / "strace")
        assert conns
        after = 0
        for writes in conns:
            i = writes.index(b"STARTTLS\r\n")
            # nothing in clear after STARTTLS
            assert not any(b"MAIL FROM" in w for w in writes[i:])
            after += len(writes) - i - 1
        if both:
            assert after <= 2 * 12 + 6 * len(conns), after
        else:
            assert after >= 4 * 12, after
    finally:
        sink.controller.stop()


# ----------------------------------------------------- MAIL FROM refused

class SenderRefused(Piped):
    """Refuses MAIL FROM with `reply` while `refusing`."""

    def __init__(self, reply, **kw):
        super().__init__(**kw)
        self.reply, self.refusing = reply, True

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        if self.refusing:
            return self.reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


@pytest.mark.parametrize("pipelining", [True, False],
                         ids=["pipelining", "lockstep"])
@pytest.mark.parametrize("reply", ["451 4.7.1 Sender address greylisted",
                                   "553 5.7.1 Sender address rejected"])
def test_a_refused_sender_is_no_refused_recipient(daemon_factory, tmp_path,
                                                  port, reply, pipelining):
    """MAIL FROM refused: the RCPTs behind it (pipelined, or sent anyway)
    get "503 need MAIL": that says nothing about the addresses, which must
    not be recorded or shown as refused."""
    sink = start_sink(SenderRefused(reply, pipelining=pipelining))
    try:
        conf = make_config(tmp_path, port, units=many_units(2),
                           cycles=ONE_STEP, mail=piped_mail(sink.port, 1))
        d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
        temp = reply.startswith("4")

        def settled():
            r = rows(tmp_path, "select state, attempts, last_error from "
                     "outbox")
            return r if len(r) == 2 and all(
                a >= 1 and st == ("pending" if temp else "failed")
                for st, a, _ in r) else None
        for st, _, err in wait_for(settled, what="the outcomes"):
            assert reply in err and "MAIL FROM" in err, err
        log = d.logtext()
        assert rows(tmp_path, "select * from outbox_refused") == []
        assert "address refused" not in log, log
        if temp:
            sink.refusing = False
            wait_for(lambda: all_sent(tmp_path), timeout=60,
                     what="the retry delivered")
            delivered_once(tmp_path, sink)
            assert rows(tmp_path, "select * from outbox_refused") == []
        d.stop()
    finally:
        sink.controller.stop()


# ------------------------------------- a server that limits connections

class Limited(Tap):
    """Serves `limit` connections at once; greets any beyond with 421 and
    closes it (as servers limiting connections per client do)."""

    def __init__(self, upstream, limit):
        super().__init__(upstream)
        self.limit, self.live, self.refused = limit, 0, 0

    async def _client(self, cr, cw):
        if self.live >= self.limit:
            self.refused += 1
            cw.write(b"421 4.7.0 Too many connections from your host\r\n")
            await cw.drain()
            cw.close()
            return
        self.live += 1
        try:
            await super()._client(cr, cw)
        finally:
            self.live -= 1


def test_a_connection_limit_below_parallel_defers_nothing(daemon_factory,
                                                          tmp_path, port):
    """parallel = 4 against a server that takes 2: the refused connections
    cost no notice a deferral (and a retry_min's delay); the mail goes on
    the two it took."""
    sink = start_sink(Piped())
    tap = Limited(sink.port, 2)
    try:
        conf = make_config(tmp_path, port, units=many_units(20),
                           cycles=ONE_STEP, mail=piped_mail(tap.port, 4))
        # 600x only so that deferrals, if any, come back within the test
        d = daemon_factory(conf, port, now=BEFORE, speed=600).start()
        wait_for(lambda: all_sent(tmp_path), timeout=60,
                 what="every row sent")
        log = d.logtext()
        d.stop()
        assert len(delivered_once(tmp_path, sink)) == 20
        assert tap.refused >= 1                    # the limit was met
        assert "notice deferred" not in log, log
        assert re.search(r"smtp: a connection failed while \d others? "
                         r"(is|are) open or opening \(.*421 4\.7\.0 Too many "
                         r"connections", log), log
        st = rows(tmp_path, "select max(attempts) from outbox")[0][0]
        assert st == 1
    finally:
        tap.stop()
        sink.controller.stop()


def test_a_server_that_refuses_every_connection_defers_each_notice_once(
        daemon_factory, tmp_path, port):
    """The other side of the above: when no connection works, every queued
    notice is deferred, one per failed connection, no connection storm."""
    sink = start_sink(Piped())
    tap = Limited(sink.port, 0)
    try:
        conf = make_config(tmp_path, port, units=many_units(10),
                           cycles=ONE_STEP, mail=piped_mail(tap.port, 4))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: rows(tmp_path, "select count(*) from outbox where "
                              "attempts = 1 and state = 'pending'")[0][0]
                 == 10, what="every notice deferred")
        log = d.logtext()
        st, _, _ = d.get("/healthz")
        d.stop()
        assert st == 200
        assert sink.messages == []
        assert log.count("notice deferred (attempt 1") == 10, log
        assert rows(tmp_path, "select max(attempts) from outbox")[0][0] == 1
        for (err,) in rows(tmp_path, "select last_error from outbox"):
            assert "421 4.7.0 Too many connections" in err, err
        assert 10 <= tap.refused <= 10 + 4, tap.refused
    finally:
        tap.stop()
        sink.controller.stop()


# ------------------------------------------------------- idle: QUIT at 30 s

class Quitting(Counting):
    """Counts QUITs, and the connections that ended."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.quits = 0

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 2.0.0 Bye"


def test_idle_connections_say_quit_and_close(daemon_factory, tmp_path, port):
    """After 30 idle seconds each connection sends QUIT and closes at its
    answer (the one test here that waits: cutoffd's idle time is real)."""
    sink = start_sink(Quitting())
    tap = Tap(sink.port)
    try:
        conf = make_config(tmp_path, port, units=many_units(4),
                           cycles=ONE_STEP, mail=piped_mail(tap.port, 2))
        d = daemon_factory(conf, port, now=BEFORE).start()
        wait_for(lambda: all_sent(tmp_path), what="every row sent")
        assert sink.quits == 0
        wait_for(lambda: sink.quits == sink.sessions, timeout=45,
                 what="a QUIT on every connection")
        # and they ended (the server closes at its 221, cutoffd at reading it)
        wait_for(lambda: tap.closed == len(tap.conns), timeout=10,
                 what="the connections closed")
        st, _, _ = d.get("/healthz")
        d.stop()
        assert st == 200 and sink.sessions == len(tap.conns) >= 1
        delivered_once(tmp_path, sink)
        for reads in tap.conns:
            assert b"".join(reads).endswith(b"QUIT\r\n")
    finally:
        tap.stop()
        sink.controller.stop()


class Bloated(Tap):
    """Blows the server's first "250 OK" of a transaction up to a
    multi-line reply of about 20 kB (lines of 1 kB), while `bloat`."""
    bloat = True

    async def _reply(self, w, b):
        if self.bloat and b"250 OK\r\n" in b:
            big = b"".join(b"250-" + b"x" * 1000 + b"\r\n" for _ in range(20))
            b = b.replace(b"250 OK\r\n", big + b"250 OK\r\n", 1)
        await super()._reply(w, b)


def test_a_reply_beyond_the_input_buffer_defers(daemon_factory, tmp_path,
                                               port):
    """Every line within the limit, the reply as a whole larger than smtp.c
    reads (16 kB): the connection fails with a clear error, the notice is
    deferred, the daemon serves on, and the retry goes out once."""
    sink = start_sink(Piped())
    tap = Bloated(sink.port)
    try:
        conf = make_config(tmp_path, port, units=many_units(1),
                           cycles=ONE_STEP, mail=piped_mail(tap.port, 1))
        d = daemon_factory(conf, port, now=BEFORE, speed=600).start()

        def deferred():
            r = rows(tmp_path, "select state, attempts, last_error "
                     "from outbox")
            return r[0] if r and r[0][1] >= 1 else None
        st, _, err = wait_for(deferred, what="the deferral")
        assert st == "pending" and "server reply too long" in err, err
        assert d.get("/healthz")[0] == 200
        tap.bloat = False
        wait_for(lambda: all_sent(tmp_path), timeout=60,
                 what="the retry delivered")
        d.stop()
        delivered_once(tmp_path, sink)
    finally:
        tap.stop()
        sink.controller.stop()
