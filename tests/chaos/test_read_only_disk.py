"""The data dir's disk failing mid-recording, for real: a loop-mounted ext4 image mounted with
errors=remount-ro is made to fail (the kernel's /sys/fs/ext4/<dev>/trigger_fs_error), which
turns it read-only at once, as a dying disk does. The recording must stop with that reason
(exit code 1), what it wrote before must survive the failure and decode, and once the disk is
checked and writable again, `cht rebuild` must give the session back.

Needs root (a loop mount), like the small-disk tests: CI runs as root; elsewhere it fails with
what it needs, it is never skipped."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from conftest import Cht, decode_fully, wait_for

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


@pytest.fixture
def failing_disk(tmp_path):
    """(mount point, a callable that makes the file system fail, one that checks and remounts it)."""
    image, mount = tmp_path / "disk.img", tmp_path / "mnt"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(256 * 1024 * 1024)
    made = _run("mkfs.ext4", "-q", "-F", str(image))
    assert made.returncode == 0, made.stderr

    def attach() -> Path:
        done = _run("mount", "-o", "loop,errors=remount-ro", str(image), str(mount))
        if done.returncode != 0:
            pytest.fail(f"cannot loop-mount an ext4 image (run as root): {done.stderr.strip()}", pytrace=False)
        device = Path(_run("findmnt", "-no", "SOURCE", str(mount)).stdout.strip()).name
        return Path("/sys/fs/ext4") / device / "trigger_fs_error"

    trigger = attach()
    if not trigger.exists():
        _run("umount", str(mount))
        pytest.fail(f"this kernel has no {trigger}: the test needs it to make the disk fail", pytrace=False)

    def fail() -> None:
        trigger.write_text("1")

    def repair() -> None:
        assert _run("umount", str(mount)).returncode == 0
        _run("e2fsck", "-fy", str(image))  # exit code 1: errors corrected, as expected after the abort
        attach()

    try:
        yield mount, fail, repair
    finally:
        _run("umount", "-l", str(mount))


def test_the_disk_turning_read_only_stops_the_recording_and_keeps_what_was_written(failing_disk):
    mount, fail, repair = failing_disk
    cht = Cht(mount / "data")
    rec = cht.start("record", "demo", "--no-ui", "--no-transcribe", "--session", "ro", "--max-segment", "4s",
                    "--min-free", "16M")
    wait_for(lambda: (cht.data_dir / "sessions" / "ro" / "manifest.json").exists()
             and cht.manifest("ro")["duration"] >= 9.0, 40, what="9 s to be recorded")
    failed_at = time.monotonic()
    fail()
    try:
        out, err = rec.communicate(timeout=30)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert time.monotonic() - failed_at < 10, "the recording stopped soon after the disk failed"
    assert rec.returncode == 1, err
    assert "data dir not writable: Read-only file system" in err and "cht rebuild ro" in err, err
    assert "Traceback" not in err, err

    repair()
    rebuilt = cht.run("rebuild", "ro")
    assert rebuilt.returncode == 0, rebuilt.stderr
    manifest = cht.manifest("ro")
    # everything up to about a second before the failure: segments are pushed to the disk every tick
    assert manifest["duration"] >= 8.0, manifest
    for seg in manifest["segments"]:
        counts = decode_fully(cht.session_dir("ro") / seg["file"])
        assert counts["video"] >= seg["duration"] * 25 - 2, (seg, counts)
