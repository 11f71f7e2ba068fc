"""Errors a user can cause. Each message says what went wrong and what to do about it;
the CLI prints it as one line and exits non-zero, with no traceback."""


class ChtError(Exception):
    """Base class: a problem the user can fix."""


class SourceError(ChtError):
    """The SOURCE cannot be recorded (missing, not media, unreachable, port busy...)."""


class SessionError(ChtError):
    """A session or the data dir cannot be used as asked."""


class DiskFullError(ChtError):
    """The data dir ran out of space while recording."""
