"""The sockets of `cht ingest`: a Python accept loop per TCP port (RTMP, MPEG-TS), and a
supervised ffmpeg SRT listener. A connection must prove it is a publisher within the
handshake timeout (RTMP: a valid handshake and an accepted publish; MPEG-TS: sync bytes)
or it is dropped; garbage and half-open connections cost one short-lived thread, never
the client that is publishing."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

from cht.config import IngestOptions
from cht.errors import SourceError
from cht.ingest.channel import Channel
from cht.ingest.endpoints import Endpoint
from cht.ingest.feed import TS_PACKET, TsAligner, looks_like_ts
from cht.ingest.rtmp import ProtocolError, Rejected, RtmpPublish
from cht.media.ffmpeg import ffmpeg_exe
from cht.record.recorder import die_with_parent

log = logging.getLogger("cht.ingest")

READ_SIZE = 1 << 16


class TcpListener:
    """RTMP or MPEG-TS over TCP on one port."""

    def __init__(self, endpoint: Endpoint, channel: Channel, options: IngestOptions) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self.options = options
        self._sock: socket.socket | None = None
        self._pending = threading.Semaphore(options.max_pending)

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.endpoint.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.endpoint.host, self.endpoint.port))
        except OSError as exc:
            sock.close()
            raise SourceError(f"cannot listen on {self.endpoint.label} ({exc.strerror}): "
                              "the port is in use or not allowed; pick another port") from None
        sock.listen(64)
        self._sock = sock

    def start(self) -> None:
        threading.Thread(target=self._accept, name=f"cht-ingest-{self.endpoint.port}", daemon=True).start()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, addr = self._sock.accept()
            except OSError:
                return
            client = f"{addr[0]}:{addr[1]}"
            if not self.endpoint.allows(addr[0]):
                log.warning("%s: %s is not in allow=: refused", self.endpoint.label, client)
                conn.close()
                continue
            if not self._pending.acquire(blocking=False):
                log.warning("%s: too many connections still in their handshake: %s refused", self.endpoint.label,
                            client)
                conn.close()
                continue
            handler = self._rtmp if self.endpoint.scheme == "rtmp" else self._mpegts
            threading.Thread(target=self._serve, args=(handler, conn, client), name="cht-ingest-client",
                             daemon=True).start()

    def _serve(self, handler, conn: socket.socket, client: str) -> None:
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            conn.settimeout(self.options.handshake_timeout_s)
            handler(conn, client)
        except (OSError, ProtocolError, EOFError) as exc:
            log.warning("%s: %s dropped: %s", self.endpoint.label, client, _why(exc))
        finally:
            self._release()
            try:
                conn.close()
            except OSError:
                pass

    def _release(self) -> None:
        """A connection stops counting as pending once it publishes (or ends): idempotent."""
        local = threading.current_thread()
        if not getattr(local, "released", False):
            local.released = True
            self._pending.release()

    def _rtmp(self, conn: socket.socket, client: str) -> None:
        rtmp = RtmpPublish(conn, app=self.endpoint.app, key=self.endpoint.key)
        rtmp.deadline = time.monotonic() + 2 * self.options.handshake_timeout_s
        try:
            rtmp.handshake()
            rtmp.wait_for_publish()
        except Rejected as exc:
            log.warning("%s: %s rejected: %s", self.endpoint.label, client, exc)
            return
        rtmp.deadline = None
        feed = self.channel.publish(client, rtmp.flv_writer.resume)
        if feed is None:
            rtmp.refuse("another client is publishing here")
            log.warning("%s: %s refused: another client is publishing", self.endpoint.label, client)
            return
        self._release()
        conn.settimeout(self.options.stall_timeout_s)
        try:
            for tag in rtmp.flv():
                if not feed.write(tag):
                    break
        finally:
            self.channel.unpublish(feed)
        rtmp.linger()

    def _mpegts(self, conn: socket.socket, client: str) -> None:
        deadline = time.monotonic() + self.options.handshake_timeout_s
        head = b""
        while len(head) < 3 * TS_PACKET:
            if time.monotonic() > deadline:
                raise ProtocolError("too slow to send MPEG-TS")
            chunk = conn.recv(READ_SIZE)
            if not chunk:
                raise EOFError("closed before sending MPEG-TS")
            head += chunk
        if not looks_like_ts(head):
            raise ProtocolError("not MPEG-TS (no sync bytes)")
        feed = self.channel.publish(client)
        if feed is None:
            log.warning("%s: %s refused: another client is publishing", self.endpoint.label, client)
            return
        self._release()
        conn.settimeout(self.options.stall_timeout_s)
        aligner = TsAligner()
        try:
            data = head
            while data and feed.write(aligner(data)):
                data = conn.recv(READ_SIZE)
        finally:
            self.channel.unpublish(feed)


class SrtListener:
    """ffmpeg listens for one SRT caller at a time (libsrt checks the passphrase and ignores
    datagrams that are not SRT); its stream comes back as MPEG-TS on a pipe. It is started
    again after each caller, as ffmpeg's listener serves one."""

    def __init__(self, endpoint: Endpoint, channel: Channel, log_path: Path) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self._log_path = log_path
        self._proc: subprocess.Popen | None = None
        self._stopped = threading.Event()

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.endpoint.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((self.endpoint.host, self.endpoint.port))
            except OSError as exc:
                raise SourceError(f"cannot listen on {self.endpoint.label} ({exc.strerror}): "
                                  "the port is in use or not allowed; pick another port") from None

    def start(self) -> None:
        threading.Thread(target=self._supervise, name=f"cht-ingest-srt-{self.endpoint.port}", daemon=True).start()

    def close(self) -> None:
        self._stopped.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def _args(self) -> list[str]:
        host = f"[{self.endpoint.host}]" if ":" in self.endpoint.host else self.endpoint.host
        url = f"srt://{host}:{self.endpoint.port}?mode=listener"
        if self.endpoint.passphrase:
            url += f"&passphrase={quote(self.endpoint.passphrase, safe='')}&enforced_encryption=1"
        return [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "warning", "-nostdin",
                "-analyzeduration", "2000000", "-i", url, "-map", "0:v?", "-map", "0:a?", "-c", "copy",
                "-f", "mpegts", "-flush_packets", "1", "pipe:1"]

    def _supervise(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            got_media = self._serve_one()
            failures = 0 if got_media else failures + 1
            if failures and self._stopped.wait(min(10.0, 0.5 * 2 ** (failures - 1))):
                return

    def _serve_one(self) -> bool:
        with open(self._log_path, "ab") as log_file:
            self._proc = proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                 stderr=log_file, start_new_session=True,
                                                 preexec_fn=die_with_parent())
        assert proc.stdout is not None
        feed = None
        aligner = TsAligner()
        try:
            while data := proc.stdout.read1(READ_SIZE):
                if feed is None:
                    feed = self.channel.publish("srt caller")
                    if feed is None:
                        break
                if not feed.write(aligner(data)):
                    break
        finally:
            if feed is not None:
                self.channel.unpublish(feed)
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
            proc.stdout.close()
        return feed is not None


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "nothing received in time (half-open or silent)"
    return str(exc) or type(exc).__name__
