"""The texts people would sign: each audience's mail, received by a real
SMTP server (aiosmtpd) and decoded from its MIME, read for its salutation,
the report's name with its year, the plan's reference, and deadlines as
plans write them ("trước ngày 13/03/2024").  Time is the daemon's injected
clock.  A decoded sample of each mail is kept in build/artifacts/mails/."""
import time
from pathlib import Path

import pytest

from conftest import CYCLES, ROOT, ctl, init_state, make_config
from test_notices import smtp, smtp_mail, wait_for  # noqa: F401 (fixture)

ARTIFACTS = ROOT / "build" / "artifacts" / "mails"
REF = "Kế hoạch số 1736/KH-BCĐ138"
# q1 with the plan's reference; the other cycles as in conftest
TEXT_CYCLES = CYCLES.replace(
    "title  = Báo cáo quý I\n", f"title  = Báo cáo quý I\nref    = {REF}\n", 1)
SECRETARIAT = "thuongtruc@example.vn"
CHIEF = "truongban@example.vn"


def content(msg):
    """The decoded text part, with the line ends a reader sees."""
    return msg.get_content().replace("\r\n", "\n")


def save(name, rcpts, msg):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    text = (f"To: {', '.join(rcpts)}\nSubject: {msg['Subject']}\n\n"
            f"{content(msg)}")
    (ARTIFACTS / f"{name}.txt").write_text(text)


def run_until(daemon_factory, tmp_path, port, sink, now, want, speed=10,
              cycles=TEXT_CYCLES, before=None):
    """Starts the daemon at `now`, waits for a mail to each of `want`,
    returns {recipient: message}."""
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=cycles)
    if before:
        init_state(conf, port, now="2024-03-01T10:00")
    for args in before or []:
        r = ctl(conf, *args, now="2024-03-05T10:00")
        assert r.returncode == 0, r.stderr
    d = daemon_factory(conf, port, now=now, speed=speed).start()

    def got():
        rc = {r[0] for r, _ in sink.messages}
        return all(w in rc for w in want)

    wait_for(got, what=f"mail to {want}")
    time.sleep(0.3)
    d.stop()
    out = {}
    for r, m in sink.messages:
        out.setdefault(r[0], m)
        assert not m.defects, m.defects
    return conf, out


def common(body):
    """What every mail about q1/2024 says, however it is addressed."""
    assert "quý I/2024" in body
    assert "trước ngày 13/03/2024" in body
    assert "24:00" not in body  # not the machine's "13/03/2024 24:00"
    assert "từ ngày 15/12/2023 đến ngày 13/03/2024" in body


def test_reminder_to_a_unit(daemon_factory, tmp_path, port, smtp):
    sink = smtp()
    _, got = run_until(daemon_factory, tmp_path, port, sink,
                       "2024-03-06T07:59:50", ["tuphap@example.vn"])
    m = got["tuphap@example.vn"]
    body = content(m)
    save("unit-reminder", ["tuphap@example.vn"], m)
    assert "Báo cáo quý I/2024" in m["Subject"]
    assert body.startswith("Kính gửi: Phòng Tư pháp\n")
    common(body)
    assert f"Thực hiện {REF}, đề nghị Phòng Tư pháp gửi Báo cáo quý I/2024" \
        in body
    assert "(còn 7 ngày)" in body
    assert "Trân trọng./.\nCông an Thành phố - Thường trực Ban Chỉ đạo" in body


def test_escalation_to_a_head(daemon_factory, tmp_path, port, smtp):
    sink = smtp()
    head = "truongphong.tuphap@example.vn"
    _, got = run_until(daemon_factory, tmp_path, port, sink,
                       "2024-03-14T07:59:50", [head])
    m = got[head]
    body = content(m)
    save("head-escalation", [head], m)
    assert "Báo cáo quý I/2024" in m["Subject"]
    assert "Phòng Tư pháp" in m["Subject"]
    # addressed to the head in person, not to the unit
    assert body.startswith("Kính gửi: Đồng chí Thủ trưởng Phòng Tư pháp\n")
    common(body)
    assert REF in body
    assert "Đến ngày 14/03/2024" in body and "chậm 1 ngày" in body
    assert "chịu trách nhiệm" in body


def test_secretariat_digest(daemon_factory, tmp_path, port, smtp):
    sink = smtp()
    # +3d falls on Saturday 16/03: send_days = workdays sends it on Monday
    _, got = run_until(daemon_factory, tmp_path, port, sink,
                       "2024-03-18T07:59:50", [SECRETARIAT],
                       before=[("received", "mttq", "q1/2024-03-13")])
    m = got[SECRETARIAT]
    body = content(m)
    save("secretariat-digest", [SECRETARIAT], m)
    assert "Báo cáo quý I/2024" in m["Subject"] and "3 đơn vị" in m["Subject"]
    # to the standing office itself: its own name in the salutation, not
    # the chief's, and not spoken of in the third person
    assert body.startswith(
        "Kính gửi: Công an Thành phố - Thường trực Ban Chỉ đạo\n")
    assert "Lãnh đạo" not in body and "Trưởng Ban" not in body
    assert body.count("Công an Thành phố - Thường trực Ban Chỉ đạo") == 1
    assert "hệ thống chưa ghi nhận Báo cáo quý I/2024 của 3 đơn vị" in body
    common(body)
    assert f"- Căn cứ: {REF}" in body
    for name in ("Phòng Tư pháp", "Phòng Lao động - Thương binh và Xã hội",
                 "Ban Chỉ đạo phường Tân Lợi"):
        assert name in body
    assert "Ủy ban Mặt trận" not in body


def test_chief_digest(daemon_factory, tmp_path, port, smtp):
    sink = smtp()
    _, got = run_until(daemon_factory, tmp_path, port, sink,
                       "2024-03-20T07:59:50", [CHIEF])
    m = got[CHIEF]
    body = content(m)
    save("chief-digest", [CHIEF], m)
    assert "Báo cáo quý I/2024" in m["Subject"]
    assert body.startswith("Kính gửi: Đồng chí Trưởng Ban Chỉ đạo\n")
    common(body)
    assert f"Thực hiện {REF}, hạn gửi Báo cáo quý I/2024" in body
    assert "4 đơn vị" in body
    assert "Kính báo cáo Đồng chí Trưởng Ban Chỉ đạo" in body
    assert body.split("\n--\n")[0].rstrip().endswith(
        "Công an Thành phố - Thường trực Ban Chỉ đạo")


def test_reminder_after_an_extension(daemon_factory, tmp_path, port, smtp):
    """Needs `cutoffctl extend` (the ledger's, on main)."""
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=TEXT_CYCLES)
    init_state(conf, port, now="2024-03-01T10:00")
    r = ctl(conf, "extend", "q1/2024-03-13", "2024-03-20", "--unit",
            "tu-phap", now="2024-03-05T10:00")
    assert r.returncode == 0, r.stderr
    d = daemon_factory(conf, port, now="2024-03-13T07:59:50", speed=10).start()
    wait_for(lambda: any(r[0] == "tuphap@example.vn" for r, _ in sink.messages),
             what="the reminder to tu-phap")
    time.sleep(0.3)
    d.stop()
    m = next(m for r, m in sink.messages if r[0] == "tuphap@example.vn")
    body = content(m)
    save("unit-extended", ["tuphap@example.vn"], m)
    assert body.startswith("Kính gửi: Phòng Tư pháp\n")
    assert "gia hạn" in body and "20/03/2024" in body
    assert "trước ngày 20/03/2024" in body
    assert "quý I/2024" in body and REF in body
    # the extension said as people write it, not "20/03/2024 24:00"
    assert ("gia hạn đến 20/03/2024 (hạn trước đây: 13/03/2024)" in body), body
    assert "24:00" not in body


def test_english_texts(daemon_factory, tmp_path, port, smtp):
    """The English templates say the same: label, reference, deadline."""
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=TEXT_CYCLES, extra_daemon="lang = en")
    head = "truongphong.tuphap@example.vn"
    d = daemon_factory(conf, port, now="2024-03-14T07:59:50", speed=10).start()
    wait_for(lambda: any(r[0] == head for r, _ in sink.messages),
             what="the escalation to the head")
    time.sleep(0.3)
    d.stop()
    m = next(m for r, m in sink.messages if r[0] == head)
    body = content(m)
    assert body.startswith("To: the Head of Phòng Tư pháp\n")
    assert "(Q1 2024)" in m["Subject"]
    assert f"Under {REF}," in body
    assert "by the end of 13/03/2024" in body
    assert "from 15/12/2023 to 13/03/2024" in body


LABELS = """
[policy p]
at       = 08:00
remind   = 0d

[cycle m]
title  = Báo cáo tháng
due    = 03-20
period = 02-15 .. 03-14
time   = 17:00
policy = p
units  = tu-phap

[cycle n]
title  = Báo cáo công tác
label  = nine-months
due    = 03-20
policy = p
units  = tu-phap

[cycle h]
title  = Báo cáo sơ kết 6 tháng
due    = 03-20
policy = p
units  = tu-phap

[cycle y]
title  = Báo cáo tổng kết năm
due    = 03-20
policy = p
units  = tu-phap

[cycle q]
title  = Báo cáo công tác phòng, chống tội phạm
label  = quarter
due    = 03-20
policy = p
units  = tu-phap

[cycle k]
title  = Báo cáo quý I năm 2024 về an ninh trật tự
due    = 2024-03-20
policy = p
units  = tu-phap

[cycle t]
title  = Báo cáo chuyên đề
label  = đợt cao điểm Tết %Y
due    = 2024-03-20
policy = p
units  = tu-phap
"""


def test_labels_from_title_key_and_text(daemon_factory, tmp_path, port, smtp):
    """The label from the title's words, from `label = KIND`, from a text;
    a timed deadline; no period: its line left out."""
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=LABELS)
    d = daemon_factory(conf, port, now="2024-03-20T07:59:50", speed=600).start()
    wait_for(lambda: len(sink.messages) >= 7, what="seven reminders")
    time.sleep(0.3)
    d.stop()
    subj = {m["Subject"]: content(m) for _, m in sink.messages}
    by = {s.rsplit(" (hạn ", 1)[0]: b for s, b in subj.items()}
    assert set(by) == {
        "V/v gửi Báo cáo tháng 3/2024",                     # title's word
        "V/v gửi Báo cáo công tác 09 tháng năm 2024",       # label = KIND
        "V/v gửi Báo cáo sơ kết 6 tháng đầu năm 2024",      # completed
        "V/v gửi Báo cáo tổng kết năm 2024",
        "V/v gửi Báo cáo công tác phòng, chống tội phạm quý I/2024",
        "V/v gửi Báo cáo quý I năm 2024 về an ninh trật tự",  # has a year
        "V/v gửi Báo cáo chuyên đề đợt cao điểm Tết 2024",  # label = text
    }, subj
    m = by["V/v gửi Báo cáo tháng 3/2024"]
    assert "trước 17:00 ngày 20/03/2024" in m
    assert "từ ngày 15/02/2024 đến ngày 14/03/2024" in m
    # no reference: the default basis
    n = by["V/v gửi Báo cáo công tác 09 tháng năm 2024"]
    assert "Thực hiện chế độ thông tin, báo cáo của Ban Chỉ đạo," in n
    # a one-off plan has no period: its line is left out, not left blank
    t = by["V/v gửi Báo cáo chuyên đề đợt cao điểm Tết 2024"]
    assert "Thời gian lấy số liệu" not in t and "- Hạn gửi: trước ngày" in t


@pytest.mark.parametrize("value,why", [
    ("x" * 161, "longer than 160 bytes"),
    ("Kế hoạch {{unit}}", "template syntax"),
    ("a\tb", "control character"),
])
def test_ref_is_validated_with_file_line(tmp_path, port, value, why):
    cycles = TEXT_CYCLES.replace(f"ref    = {REF}", f"ref    = {value}")
    conf = make_config(tmp_path, port, cycles=cycles)
    r = ctl(conf, "check")
    assert r.returncode != 0
    line = next(i for i, l in enumerate(Path(conf).read_text().split("\n"), 1)
                if l.startswith("ref "))
    assert f"{conf}:{line}: ref:" in r.stderr and why in r.stderr, r.stderr


def test_older_template_directory_keeps_working(daemon_factory, tmp_path,
                                                port, smtp):
    """0.1's three files only (remind, escalate, digest): the head's
    escalation falls back on escalate.txt, the digests on digest.txt."""
    import shutil
    from conftest import TEMPLATES
    old = tmp_path / "tmpl"
    (old / "vi").mkdir(parents=True)
    for f in ("remind.txt", "escalate.txt"):
        shutil.copy(TEMPLATES / "vi" / f, old / "vi" / f)
    (old / "vi" / "digest.txt").write_text(
        "Subject: Chưa gửi {{title}}: {{count}}\n\nKính gửi: Ban\n\n{{units}}\n")
    sink = smtp()
    conf = make_config(tmp_path, port, mail=smtp_mail(sink.port),
                       cycles=TEXT_CYCLES)
    text = Path(conf).read_text().replace(f"templates  = {TEMPLATES}",
                                          f"templates  = {old}")
    Path(conf).write_text(text)
    head = "truongphong.tuphap@example.vn"
    # the +3d step of Saturday 16/03 goes on Monday (send_days = workdays)
    d = daemon_factory(conf, port, now="2024-03-18T07:59:50", speed=10).start()
    wait_for(lambda: {head, SECRETARIAT} <= {r[0] for r, _ in sink.messages},
             what="the head's escalation and the digest")
    time.sleep(0.3)
    d.stop()
    got = {r[0]: content(m) for r, m in sink.messages}
    assert got[head].startswith("Kính gửi: Phòng Tư pháp\n")
    assert got[SECRETARIAT].startswith("Kính gửi: Ban\n")
