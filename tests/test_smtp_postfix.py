"""Mail to a real Postfix (Debian's), its strictest about pipelining:
`smtpd_forbid_unauth_pipelining = yes` (the default from Postfix 3.9:
a client that pipelines against RFC 2920 is disconnected) and
`reject_unauth_pipelining`.  cutoffd's pipelined transactions (the next
message's MAIL, RCPT and DATA after the previous one's end of data) must
pass, several messages per connection, and a refused address among a
unit's two is recorded with Postfix's reply while the other gets it.

The instance is the test's own: its configuration and queue in tmp_path,
its master run in the foreground (as root, like any Postfix), mail
discarded after it is queued."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, make_config
from test_notices_smtp import rows, wait_for

MASTER = Path("/usr/lib/postfix/sbin/master")
N = 60

pytestmark = pytest.mark.skipif(
    not MASTER.exists() or os.geteuid() != 0,
    reason="needs Debian's postfix and root (scripts/install-deps)")

UNITS = "".join(f"\n[unit xa-{i:02d}]\nname = Ủy ban nhân dân xã số {i}\n"
                f"email = xa{i:02d}@example.vn\n" for i in range(N)) + """
[unit tu-phap]
name  = Phòng Tư pháp
email = tuphap@example.vn, vanthu@ngoai.example.org
"""


@pytest.fixture
def postfix():
    """A Postfix of its own on a free loopback port; yields (port, log).
    Its directory is outside pytest's (0700, root's): Postfix's processes
    run as the postfix user and must reach their queue."""
    d = Path(tempfile.mkdtemp(prefix="cutoffd-postfix-"))
    d.chmod(0o755)
    conf, queue, data = d / "conf", d / "queue", d / "data"
    for p in (conf, queue, data):
        p.mkdir(parents=True)
    port = free_port()
    log = d / "maillog"
    (conf / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.example.vn
mydestination =
# relaying only to example.vn: another domain gets "Relay access denied"
mynetworks = 127.0.0.2/32
relay_domains = example.vn
default_transport = discard:
relay_transport = discard:
local_transport = discard:
smtpd_forbid_unauth_pipelining = yes
smtpd_data_restrictions = reject_unauth_pipelining
maillog_file = {log}
maillog_file_prefixes = {d}
alias_maps =
alias_database =
""")
    # the services an SMTP server that discards needs, none chrooted
    (conf / "master.cf").write_text(f"""{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
""")
    os.chown(data, _uid("postfix"), -1)
    for sub in ("active", "bounce", "corrupt", "defer", "deferred", "flush",
                "hold", "incoming", "private", "saved", "trace"):
        _dir(queue / sub, "postfix", None, 0o700)
    _dir(queue / "maildrop", "postfix", "postdrop", 0o730)
    _dir(queue / "public", "postfix", "postdrop", 0o710)
    _dir(queue / "pid", "root", None, 0o755)
    proc = subprocess.Popen([str(MASTER), "-c", str(conf), "-d"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: log.exists() and "daemon started" in log.read_text(),
                 what="postfix")
        yield port, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(d, ignore_errors=True)


def _uid(user):
    import pwd
    return pwd.getpwnam(user).pw_uid


def _dir(path, user, group, mode):
    import grp
    path.mkdir()
    os.chown(path, _uid(user), grp.getgrnam(group).gr_gid if group else -1)
    os.chmod(path, mode)


def test_pipelined_mail_through_a_strict_postfix(daemon_factory, tmp_path,
                                                 port, postfix):
    pport, log = postfix
    mail = (f"transport = smtp\nurl = smtp://127.0.0.1:{pport}\n"
            "starttls = no\nparallel = 3\n"
            "from = Thường trực Ban Chỉ đạo 138 <thuongtruc@example.vn>\n")
    conf = make_config(tmp_path, port, mail=mail, units=UNITS)
    d = daemon_factory(conf, port, now="2024-03-06T07:59:59").start()
    wait_for(lambda: rows(tmp_path, "select count(*) from outbox where "
                          "state = 'sent'")[0][0] >= N + 1, timeout=60,
             what="every reminder sent")
    d.stop()
    text = log.read_text()
    assert not re.search(r"synchronization|improper command pipelining",
                         text), text[-3000:]
    states = rows(tmp_path, "select state, count(*) from outbox group by 1")
    assert states == [("sent", N + 1)], states
    # Postfix queued every message (one queue id each), then discarded it
    queued = re.findall(r"postfix/qmgr\[\d+\]: ([0-9A-F]+): from=<thuongtruc@"
                        r"example\.vn>", text)
    assert len(set(queued)) == N + 1
    # connections were reused: some carried several mails
    per_conn = [int(m) for m in re.findall(r"disconnect from \S+ ehlo=1 "
                                           r"mail=(\d+)", text)]
    assert per_conn and max(per_conn) > 1 and sum(per_conn) == N + 1
    # the address Postfix would not relay: recorded with its reply
    (addr, reply), = rows(tmp_path, "select address, reply from "
                          "outbox_refused")
    assert addr == "vanthu@ngoai.example.org"
    assert "Relay access denied" in reply and reply[:1] == "4", reply
    assert re.search(r"discard\[\d+\]: [0-9A-F]+: to=<tuphap@example\.vn>",
                     text)
