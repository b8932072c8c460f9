"""The daemon's life cycle with mail over SMTP under valgrind: connections
opened by libcurl and driven by smtp.c (pipelined), a reload that changes
the mail server, and a stop with connections still open.  No error, no
leak."""
import shutil
import time

import pytest

from conftest import make_config
from test_notices_smtp import Sink, TWO_ADDRESSES, smtp_mail, start_sink, \
    rows


class PipeliningSink(Sink):
    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", responses[-1]]


UNITS = TWO_ADDRESSES + "".join(
    f"\n[unit xa-{i}]\nname = Ủy ban nhân dân xã số {i}\n"
    f"email = xa{i}@example.vn\n" for i in range(6))


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="no valgrind")
def test_valgrind_smtp_life_cycle(daemon_factory, tmp_path, port):
    sink = start_sink(PipeliningSink())
    other = start_sink(Sink())
    vlog = tmp_path / "valgrind.log"
    try:
        conf = make_config(tmp_path, port, units=UNITS,
                           mail=smtp_mail(f"smtp://127.0.0.1:{sink.port}",
                                          "starttls = no\nparallel = 2\n"))
        d = daemon_factory(conf, port, now="2024-03-06T07:59:58", wrapper=[
            "valgrind", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
            f"--log-file={vlog}"])
        d.start(timeout=120)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(sink.messages) < 7:
            time.sleep(0.2)
        assert len(sink.messages) == 7, len(sink.messages)
        # another server: the connections to the first are now stale;
        # the stop closes them (QUIT) with the rest
        conf.write_text(conf.read_text().replace(
            f"127.0.0.1:{sink.port}", f"127.0.0.1:{other.port}"))
        d.reload()
        rc = d.stop(timeout=120)
        assert rc == 0, vlog.read_text()[-4000:]
        sent = rows(tmp_path, "select count(*) from outbox where state = 'sent'")
        assert sent[0][0] == 7
    finally:
        sink.controller.stop()
        other.controller.stop()
