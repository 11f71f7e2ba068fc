"""Bad input, table-driven, over every command: malformed arguments, bad ids, bad URLs,
huge values, non-UTF-8 paths. Each must end in exactly one `cht: error: …` line naming
the problem, exit code 2, no traceback, and leave the data dir as it was."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Cht, make_media

NON_UTF8 = os.fsdecode(b"/tmp/lecture-\xff\xfe.mp4")  # a path no UTF-8 decoder accepts

CASES = [
    # (arguments, words the one line must contain)
    (["record"], "needs a SOURCE"),
    (["record", "/no/such/lecture.mp4"], "no such file"),
    (["record", NON_UTF8], "no such file"),
    (["record", "ftp://example.org/talk.mp4"], "unsupported URL scheme"),
    (["record", "rtmp://127.0.0.1/live/key"], "needs a host and a port"),
    (["record", "tcp://127.0.0.1:99999"], "Port out of range"),
    (["record", "rtmp://[::1:80/live/key"], "not a valid URL"),
    (["record", "demo", "--port", "99999"], "--port"),
    (["record", "demo", "--max-segment", "99999h"], "out of range"),
    (["record", "demo", "--max-segment", "-1s"], "out of range"),
    (["record", "demo", "--min-free", "9" * 40], "out of range"),
    (["record", "demo", "--session", "x" * 65], "not a valid session id"),
    (["record", "demo", "--session", NON_UTF8], "not a valid session id"),
    (["record", "demo", "--append"], "--session"),
    (["record", "demo", "--model", "/no/such/model"], "/no/such/model"),
    (["record", "demo", "--bogus"], "No such option"),
    (["record", "--attach", "demo"], "--attach records no SOURCE"),
    (["record", "--attach", "--timeout", "forever"], "not a duration"),
    (["record", "demo", "--stages", "scenes,bogus"], "unknown stage bogus"),
    (["record", "demo", "--no-analyze", "--stages", "transcript"], "not both"),
    (["follow", "/no/such/session/dir"], "not a session dir"),
    (["follow", "no-such-session"], "no session"),
    (["follow", "x", "--stages", "scenes,bogus"], "unknown stage bogus"),
    (["follow", "x", "--stages", ","], "unknown stage"),
    (["demo", "--port", "0"], "--port"),
    (["ingest"], "--listen"),
    (["ingest", "--listen", "udp://127.0.0.1:9000"], "rtmp://"),
    (["ingest", "--listen", "tcp://[::1:80"], "not a URL"),
    (["ingest", "--listen", "rtmp://0.0.0.0:1935/live"], "stream key"),
    (["ingest", "--listen", "tcp://127.0.0.1:9000?allow=999.1.1.1"], "not an address"),
    (["ingest", "--listen", "tcp://127.0.0.1:9000", "--grace", "-5s"], "out of range"),
    (["ingest", "--listen", "tcp://127.0.0.1:9000", "--relay-port", "70000"], "--relay-port"),
    (["ingest", "--listen", "tcp://127.0.0.1:9000", "--stages", "ocr,,bogus"], "unknown stage bogus"),
    (["sessions", "extra"], "unexpected extra argument"),
    (["info"], "Missing argument"),
    (["info", "../../etc"], "not a valid session id"),
    (["info", NON_UTF8], "not a valid session id"),
    (["info", "no-such-session"], "no session"),
    (["rebuild", "a/b"], "not a valid session id"),
    (["rebuild", "no-such-session"], "no session"),
    (["analyze", "no-such-session"], "no session"),
    (["analyze", "x", "--min-scene", "soon"], "not a duration"),
    (["transcribe", "no-such-session"], "no session"),
    (["transcribe", "x", "--model", "/no/such/model"], "no session"),
    (["search"], "Missing argument"),
    (["search", "x", "--limit", "0"], "--limit"),
    (["search", "x", "--limit", "1" + "0" * 30], "--limit"),
    (["search", "x", "--since", "last tuesday"], "--since"),
    (["search", "x", "--session", "no-such-session"], "no session"),
    (["search", "x", "--kind", "slides"], "speech or slide"),
    (["export", "no-such-session"], "no session"),
    (["export", "SESSION", "-f", "docx"], "docx"),
    (["export", "SESSION", "-f", "srt", "-o", "/proc/talk.srt"], "/proc/talk.srt"),
    (["serve", "--port", "70000"], "--port"),
    (["open", "no-such-session"], "no session"),
    (["capture", "no-such-session"], "no session"),
    (["capture"], "no session is recording"),
    (["capture", "SESSION"], "no running recording"),
    (["frobnicate"], "No such command"),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Cht, str]:
    tmp = tmp_path_factory.mktemp("catalogue")
    cht = Cht(tmp / "data")
    src = make_media(tmp / "short.mp4", 2)
    result = cht.run("record", "--fast", "--no-ui", "--no-transcribe", "--session", "talk", str(src))
    assert result.returncode == 0, result.stderr
    return cht, "talk"


def test_every_command_answers_bad_input_with_one_line_and_exit_code_2(recorded):
    cht, session = recorded
    before = sorted(p.relative_to(cht.data_dir) for p in cht.data_dir.rglob("*") if p.suffix != ".log")

    def run(case):
        args, needle = case
        return case, cht.run(*[session if a == "SESSION" else a for a in args], timeout=60)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, CASES))
    failures = []
    for (args, needle), result in results:
        lines = result.stderr.strip().splitlines()
        ok = (result.returncode == 2 and len(lines) == 1 and lines[0].startswith("cht: error: ")
              and needle in lines[0] and "Traceback" not in result.stderr)
        if not ok:
            failures.append(f"cht {' '.join(map(ascii, args))}: exit {result.returncode}, stderr {result.stderr!r}")
    assert not failures, "\n".join(failures)
    after = sorted(p.relative_to(cht.data_dir) for p in cht.data_dir.rglob("*") if p.suffix != ".log")
    assert after == before  # nothing half-made left behind
