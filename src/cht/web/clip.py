"""The page's "download clip": `cht clip` into a private temp dir, streamed back, then deleted."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from cht.clips import cut, default_name
from cht.errors import ChtError
from cht.session import Session


def clip_response(session: Session, start: float, end: float, exact: bool) -> FileResponse:
    """A bad range is a 422 with `cut`'s one-line reason; the temp dir goes once sent."""
    work = Path(tempfile.mkdtemp(prefix="cht-clip-"))
    name = default_name(session.id, start, end)
    try:
        made = cut(session, start, end, work / name.name, exact=exact)
    except ChtError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise HTTPException(422, str(exc)) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return FileResponse(made.path, media_type="video/mp4", filename=name.name,
                        headers={"X-Cht-Clip-Start": f"{made.start:.3f}", "X-Cht-Clip-End": f"{made.end:.3f}"},
                        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True))
