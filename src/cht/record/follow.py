"""A session another process is recording (the ingest service), followed from its files:
segments and gaps derived from each file's metadata, its run note and its complete
fragments, exactly as the recorder derives them, and only the bytes new since the last
look are read."""

from __future__ import annotations

from pathlib import Path

from cht.errors import SessionError
from cht.record.tracker import SegmentTracker
from cht.session import META_RUN, Manifest, Session, derive, read_segment_metadata, segment_facts


class ManifestFollower:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._tracker = SegmentTracker(session.segments_dir)
        self._meta: dict[Path, dict[str, str]] = {}
        self._notes: dict[int, float] = {}

    def refresh(self) -> Manifest:
        """The manifest as the files stand now; state and source as the recorder last wrote them."""
        facts = []
        for index, scan in self._tracker.poll():
            meta = self._meta.get(scan.path)
            if meta is None:
                meta = read_segment_metadata(scan.path)
                if META_RUN not in meta:
                    continue  # its header is not written yet
                self._meta[scan.path] = meta
            run = int(meta[META_RUN]) if meta[META_RUN].isdigit() else -1
            if run not in self._notes and (note := self.session.read_run_note(run)) is not None:
                self._notes[run] = note
            fact = segment_facts(str(scan.path.relative_to(self.session.root)), index, scan, meta,
                                 self._notes.get(run))
            if fact is not None:
                facts.append(fact)
        segments, gaps = derive(facts)
        try:
            written = self.session.current_manifest()
        except SessionError:
            written = Manifest(id=self.session.id, source="", state="recording")
        return Manifest(id=self.session.id, source=written.source, state=written.state, reason=written.reason,
                        started_at=segments[0].started_at if segments else written.started_at,
                        segments=segments, gaps=gaps)
