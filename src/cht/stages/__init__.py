"""The stages a follower can feed, by name. Registering a new stage is one line here."""

from __future__ import annotations

import logging
from typing import Callable

from cht import events as ev

from cht.errors import ChtError, SessionError
from cht.stages.base import Stage, StageConfig, StageContext
from cht.stages.ocr import OcrStage
from cht.stages.scenes import ScenesStage
from cht.stages.speakers import SpeakersStage
from cht.stages.transcript import TranscriptStage
from cht.stages.waveform import WaveformStage

REGISTRY: dict[str, Callable[[StageContext, StageConfig], Stage]] = {
    "scenes": ScenesStage,
    "waveform": WaveformStage,
    "transcript": TranscriptStage,
    "ocr": OcrStage,
    "speakers": SpeakersStage,
}
ALL = tuple(REGISTRY)

log = logging.getLogger("cht.follow")


def parse_stages(text: str) -> tuple[str, ...]:
    """`scenes,waveform,transcript` (any subset, any order) as stage names, or a one-line error."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        raise SessionError(f"--stages {text!r}: unknown stage {', '.join(unknown) or '(none given)'}; "
                           f"choose from {','.join(ALL)}")
    return names


def build_stages(names: tuple[str, ...], context: StageContext, config: StageConfig) -> list[Stage]:
    """The named stages; one that cannot start is left out with a warning (the others and
    the recording go on)."""
    stages = []
    for name in names:
        try:
            stages.append(REGISTRY[name](context, config))
        except ChtError as exc:  # the user can fix it (the message says how): no traceback
            log.warning("%s: the %s stage could not start: %s", context.session_id, name, exc)
            context.bus.publish(ev.Warning(f"{name} is off for this session: {exc}"))
        except Exception as exc:
            log.exception("%s: the %s stage could not start", context.session_id, name)
            context.bus.publish(ev.Warning(f"{name} is off for this session: {exc}"))
    return stages
