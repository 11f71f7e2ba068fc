"""The sockets of `cht ingest`: a Python accept loop per TCP port (RTMP, MPEG-TS), and a
supervised ffmpeg SRT listener. A connection must prove it is a publisher within the
handshake timeout (RTMP: a valid handshake and an accepted publish; MPEG-TS: sync bytes)
or it is dropped; garbage and half-open connections cost one short-lived thread, never
the client that is publishing."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

from cht.accepting import Acceptor
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
STOP_WAIT_S = 3.0  # seconds ffmpeg gets to exit after SIGTERM before it is killed


class TcpListener:
    """RTMP or MPEG-TS over TCP on one port."""

    def __init__(self, endpoint: Endpoint, channel: Channel, options: IngestOptions) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self.options = options
        self._sock: socket.socket | None = None
        self._pending = threading.Semaphore(options.max_pending)
        self.acceptor = Acceptor(endpoint.label)

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
        while (accepted := self.acceptor.accept(lambda: self._sock)) is not None:
            conn, addr = accepted
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
            try:
                threading.Thread(target=self._serve, args=(handler, conn, client), name="cht-ingest-client",
                                 daemon=True).start()
            except RuntimeError:  # no thread to spare: the same shortage as no descriptor
                self._pending.release()
                conn.close()

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
    again after each caller, as ffmpeg's listener serves one.

    The passphrase never appears on ffmpeg's command line, which any local user can read
    (`ps`): the input is a one-entry ffconcat script, read from a pipe, whose `option` line
    carries it. A ffmpeg that ignores SIGTERM (libsrt can hang after a caller leaves) is
    killed after STOP_WAIT_S, and closing waits for that, so none outlives the service."""

    def __init__(self, endpoint: Endpoint, channel: Channel, log_path: Path) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self._log_path = log_path
        self._proc: subprocess.Popen | None = None
        self._stopped = threading.Event()
        self._proc_lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self.accepting = True  # False while ffmpeg cannot be started (no descriptors, no memory)

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.endpoint.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((self.endpoint.host, self.endpoint.port))
            except OSError as exc:
                raise SourceError(f"cannot listen on {self.endpoint.label} ({exc.strerror}): "
                                  "the port is in use or not allowed; pick another port") from None

    def start(self) -> None:
        self._supervisor = threading.Thread(target=self._supervise, name=f"cht-ingest-srt-{self.endpoint.port}",
                                            daemon=True)
        self._supervisor.start()

    def close(self) -> None:
        """Stop listening; returns once ffmpeg is gone (killed if it will not go)."""
        with self._proc_lock:
            self._stopped.set()
            proc = self._proc
        if proc is not None:
            _end(proc)
        if self._supervisor is not None:
            self._supervisor.join(STOP_WAIT_S + 2)

    def _script(self) -> bytes:
        """The ffconcat input: the listener URL and, on its own line, the passphrase."""
        host = f"[{self.endpoint.host}]" if ":" in self.endpoint.host else self.endpoint.host
        url = f"srt://{host}:{self.endpoint.port}?mode=listener"
        lines = ["ffconcat version 1.0", f"file '{url}'", "option analyzeduration 2000000"]
        if self.endpoint.passphrase:
            lines += [f"option passphrase {_escape(self.endpoint.passphrase)}", "option enforced_encryption 1"]
        return ("\n".join(lines) + "\n").encode()

    def _args(self, script_fd: int) -> list[str]:
        return [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "warning", "-nostdin",
                "-f", "concat", "-safe", "0", "-protocol_whitelist", "file,srt", "-i", f"/dev/fd/{script_fd}",
                "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-f", "mpegts", "-flush_packets", "1", "pipe:1"]

    def _supervise(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            got_media = self._serve_one()
            failures = 0 if got_media else failures + 1
            if failures and self._stopped.wait(min(10.0, 0.5 * 2 ** (failures - 1))):
                return

    def _start(self) -> subprocess.Popen | None:
        read, write = os.pipe()
        try:
            os.write(write, self._script())  # a few hundred bytes: the pipe holds them
            os.close(write)
            write = -1
            with self._proc_lock, open(self._log_path, "ab") as log_file:
                if self._stopped.is_set():
                    return None
                self._proc = subprocess.Popen(die_with_parent(self._args(read)), stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=log_file, start_new_session=True,
                                              pass_fds=(read,))
                return self._proc
        finally:
            os.close(read)
            if write != -1:
                os.close(write)

    def _serve_one(self) -> bool:
        try:
            proc = self._start()
        except OSError as exc:  # no descriptors or memory to spare: try again after a pause
            if self.accepting:
                log.warning("%s: cannot start the SRT listener (%s): retrying", self.endpoint.label, exc.strerror or exc)
            self.accepting = False
            return False
        if proc is None:
            return False
        self.accepting = True
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
            _end(proc)
            proc.stdout.close()
        return feed is not None


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if ffmpeg has not exited within STOP_WAIT_S."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        log.warning("ffmpeg (pid %d) ignored SIGTERM for %g s: killed", proc.pid, STOP_WAIT_S)
        proc.kill()
        proc.wait()


def _escape(value: str) -> str:
    """A value for an ffconcat line: every character that is not a letter or digit escaped."""
    return re.sub(r"([^A-Za-z0-9])", r"\\\1", value)


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "nothing received in time (half-open or silent)"
    return str(exc) or type(exc).__name__
