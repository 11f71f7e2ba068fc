"""What `cht ingest --listen URL` accepts, checked before anything listens.

  rtmp://HOST:PORT/APP/KEY   RTMP publishers (OBS: server rtmp://HOST:PORT/APP, key KEY)
  srt://HOST:PORT?passphrase=SECRET   SRT callers (the passphrase: 10-79 characters)
  tcp://HOST:PORT?allow=CIDR[,CIDR]   MPEG-TS over TCP from the allowed addresses

Beyond loopback a secret is required: the stream key (RTMP), the passphrase (SRT); raw
MPEG-TS has no way to carry one, so tcp:// needs `allow=` naming who may push instead.

`--listen @FILE` reads the URL from FILE: a secret on a command line is readable by every
local user (`ps`), a file of mode 0600 is not.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cht.config import is_loopback
from cht.errors import SourceError

SCHEMES = ("rtmp", "srt", "tcp")
CONTAINER = {"rtmp": "flv", "srt": "mpegts", "tcp": "mpegts"}


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    app: str | None = None  # rtmp: the application name clients connect to
    key: str | None = None  # rtmp: the stream key (None: any, loopback only)
    passphrase: str | None = None  # srt
    allow: tuple = ()  # tcp: networks allowed to push (empty: anyone, loopback only)

    @property
    def label(self) -> str:
        """The endpoint as shown and stored: no secret in it."""
        base = f"{self.scheme}://{self.host}:{self.port}"
        if self.scheme == "rtmp":
            return f"{base}/{self.app}" + ("/***" if self.key else "")
        return base

    @property
    def container(self) -> str:
        return CONTAINER[self.scheme]

    def allows(self, address: str) -> bool:
        if not self.allow:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allow)


def parse_endpoint(spec: str) -> Endpoint:
    if spec.startswith("@"):
        try:
            spec = Path(spec[1:]).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"--listen {spec}: cannot read the URL from that file "
                              f"({getattr(exc, 'strerror', None) or exc})") from None
    try:
        parts = urlsplit(spec.strip())
    except ValueError as exc:
        raise SourceError(f"--listen {_safe(spec)!r} is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise SourceError(f"--listen {spec!r}: use rtmp://HOST:PORT/APP/KEY, srt://HOST:PORT?passphrase=… "
                          "or tcp://HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname
    if not host or not port:
        raise SourceError(f"--listen {_safe(spec)} needs a host and a port, like {scheme}://0.0.0.0:"
                          f"{ {'rtmp': 1935, 'srt': 9000, 'tcp': 9001}[scheme] }")
    local = is_loopback(host)
    query = parse_qs(parts.query)
    if scheme == "rtmp":
        pieces = [p for p in parts.path.split("/") if p]
        if not pieces:
            raise SourceError(f"--listen {_safe(spec)} needs an app: rtmp://{host}:{port}/live/KEY")
        key = "/".join(pieces[1:]) or None
        if key is None and not local:
            raise SourceError(f"--listen rtmp://{host}:{port}/{pieces[0]} is reachable beyond this machine: "
                              f"add a stream key, rtmp://{host}:{port}/{pieces[0]}/KEY")
        return Endpoint(scheme, host, port, app=pieces[0], key=key)
    if scheme == "srt":
        passphrase = query.get("passphrase", [None])[0]
        if passphrase is not None and not 10 <= len(passphrase) <= 79:
            raise SourceError("--listen srt://…: the passphrase must have 10 to 79 characters")
        if passphrase is None and not local:
            raise SourceError(f"--listen srt://{host}:{port} is reachable beyond this machine: "
                              f"add ?passphrase=… (10 to 79 characters)")
        return Endpoint(scheme, host, port, passphrase=passphrase)
    allow = []
    for text in ",".join(query.get("allow", [])).split(","):
        if text.strip():
            try:
                allow.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise SourceError(f"--listen tcp://…?allow={text}: not an address or network (e.g. 10.0.0.0/8)") \
                    from None
    if not allow and not local:
        raise SourceError(f"--listen tcp://{host}:{port} is reachable beyond this machine and raw MPEG-TS has no "
                          "stream key: add ?allow=ADDRESS/NETWORK (who may push), or use srt:// with a passphrase")
    return Endpoint(scheme, host, port, allow=tuple(allow))


def _safe(spec: str) -> str:
    """The spec without its query (a passphrase) for an error message."""
    return spec.split("?", 1)[0]
