"""The OCR stage: the text of every keyframe (scene, slide, manual capture) into `ocr.jsonl`.

It reads what the scenes stage saved — `frames.jsonl` in its own dir, woken by each
`SceneDetected` and looking again every second — so it sees captures and resumed sessions
alike, and also works when another process saves the keyframes. Reading takes about a
second a slide on one core, so it runs on its own thread at a lower priority with its own
queue: a burst of keyframes waits there (the lag is in the status), while recording and the
transcript never wait for it. `finish()` reads what is still queued; `abandon()` leaves it
for a later run (a resumed run reads only what `ocr.jsonl` lacks).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from cht import events as ev
from cht.analyze.scenes import FrameRecord, read_frames
from cht.ocr.reader import UnreadableImage, read_lines
from cht.ocr.text import OCR_LOG, SlideText, append, read_ocr, title_of
from cht.sessionlog import spawn
from cht.stages.base import Stage, StageConfig, StageContext

log = logging.getLogger("cht.ocr")

POLL_S = 1.0
NICE = 10  # the worker thread's niceness added: speech and recording come first


class OcrStage(Stage):
    name = "ocr"
    consumes = frozenset()  # keyframes come from the scenes stage's files, not from the decoder

    def __init__(self, context: StageContext, config: StageConfig) -> None:
        if context.start_over:
            (context.out_dir / OCR_LOG).unlink(missing_ok=True)
        self.context = context
        self.out_dir = context.out_dir
        self._done = {s.file for s in read_ocr(self.out_dir)}
        self._seen: dict[str, float] = {}  # keyframe -> when it was first queued (monotonic)
        self._wake = threading.Event()
        self._finishing = threading.Event()
        self._abandoned = threading.Event()
        self.read = 0
        self.cpu_s = 0.0  # this thread's CPU time spent reading: what OCR costs, measured
        self._unsubscribe = context.bus.subscribe(self._on_event)
        self._thread = spawn(self._run, name=f"cht-ocr-{context.session_id}")

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.SceneDetected):
            self._wake.set()

    # -- the worker --

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICE))
        except (OSError, AttributeError):
            pass  # not Linux: the same work, at the same priority
        while not self._abandoned.is_set():
            finishing = self._finishing.is_set()
            try:
                todo = self._pending(final=finishing)
                if todo:
                    self._read(*todo[0])
                    continue  # one at a time: a capture made meanwhile is read next
            except OSError:  # a file unreadable or unwritable for a moment: the next look may do
                log.exception("%s: reading keyframes failed", self.context.session_id)
            if finishing:
                return
            self._wake.wait(POLL_S)
            self._wake.clear()

    def _pending(self, final: bool) -> list[tuple[FrameRecord, Path]]:
        """Keyframes not read yet: the user's captures first (someone is waiting on the page
        for their text; read in time order, a capture waited for every slide queued before
        it), then the oldest. At the end of an offline run into a fresh dir, the session's
        manual captures too (they move into the results afterwards)."""
        records = [(r, self.out_dir) for r in read_frames(self.out_dir)]
        if final and self.out_dir != self.context.session_dir:
            records += [(r, self.context.session_dir) for r in read_frames(self.context.session_dir)
                        if r.kind == "manual"]
        now = time.monotonic()
        todo = []
        for record, root in records:
            if record.file not in self._done:
                self._seen.setdefault(record.file, now)
                todo.append((record, root))
        return sorted(todo, key=lambda item: (item[0].kind != "manual", item[0].t))

    def _read(self, record: FrameRecord, root: Path) -> None:
        self._done.add(record.file)
        started = time.thread_time()
        try:
            lines, height = read_lines(root / record.file)
        except UnreadableImage as exc:
            log.warning("%s: keyframe %s is not a readable picture (%s); skipped",
                        self.context.session_id, record.file, exc)
            self.context.bus.publish(ev.Warning(f"ocr: keyframe {record.file} is not a readable picture; skipped"))
            return
        except Exception as exc:  # the thread must live on: the next keyframe may read fine
            log.exception("%s: reading keyframe %s failed", self.context.session_id, record.file)
            self.context.bus.publish(ev.Warning(f"ocr: keyframe {record.file} skipped after an error: {exc}"))
            return
        finally:
            self._seen.pop(record.file, None)
            self.cpu_s += time.thread_time() - started
        slide = SlideText(record.t, record.file, lines, title_of(lines, height))
        append(self.out_dir, slide)
        self.read += 1
        self.context.bus.publish(ev.SlideTextRead(slide))

    # -- the follower's calls --

    def finish(self) -> None:
        self._finishing.set()
        self._wake.set()
        self._thread.join()
        self._unsubscribe()

    def abandon(self) -> None:
        self._abandoned.set()
        self._wake.set()

    def status(self) -> dict:
        waiting = list(self._seen.values())
        return {"ocr_read": self.read, "ocr_pending": len(waiting), "ocr_cpu_s": round(self.cpu_s, 2),
                "ocr_lag": round(time.monotonic() - min(waiting), 2) if waiting else 0.0}
