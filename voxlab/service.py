"""The twistd service tree: SIP transports, the engine (sessions + media clock), the console,
the HTTP port, and the WebRTC gateway workers."""

from __future__ import annotations

import gc
import json
import os

from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, eventAsJSON, globalLogPublisher

from voxlab import __version__
from voxlab.config import Config
from voxlab.console.service import ConsoleService
from voxlab.engine.manager import Engine
from voxlab.engine.scenarios import ScenarioCatalog
from voxlab.http.site import HttpService
from voxlab.sip.location import Directory
from voxlab.sip.registrar import Registrar
from voxlab.sip.transport import SipTransportLayer

log = Logger()


def cannot_listen_message(exc: CannotListenError, config: Config, what: str = "SIP") -> str:
    """One line saying which address is taken and what to do about it."""
    reason = exc.socketError
    why = getattr(reason, "strerror", None) or str(reason)
    if what == "HTTP":
        return (f"voxlab cannot listen for HTTP on {exc.interface or config.http_host}:{exc.port}: {why}. "
                f"Another voxlab (or another web server) probably has it: stop that one, or start this "
                f"one with --http {config.http_host}:PORT (or [http] listen in the config file)")
    return (f"voxlab cannot listen for SIP on {exc.interface or config.sip_host}:{exc.port}: {why}. "
            f"Another voxlab (or another SIP server) probably has it: stop that one, or start this one "
            f"on another address with --sip {config.sip_host}:PORT (or [sip] listen in the config file)")


class VoxlabService(service.MultiService):
    """The whole server for one Config."""

    def __init__(self, config: Config, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.reactor = reactor
        self.config = config
        config.validate()
        catalog = ScenarioCatalog(config.scenarios_dir, config.routes)
        self.engine = Engine(reactor, catalog, config.rtp_host, config.rtp_low, config.rtp_high,
                             codecs=config.codecs, limits=config.session_limits(),
                             media_workers=config.workers(), data_dir=config.data_dir)
        self.engine.http_base = f"http://{config.http_host}:{config.http_port}"
        self.sip = SipTransportLayer(reactor, config.sip_host, config.sip_port, self.engine,
                                     config.transports)
        self.directory: Directory | None = None
        self.engine.sip_ua = self.sip.ua
        ConsoleService(self.engine, config, reactor).setServiceParent(self)
        self.http = HttpService(self.engine, config, reactor)
        self.http.setServiceParent(self)
        self.webrtc = None
        if config.webrtc_workers:
            from voxlab.webrtc.pool import GatewayPool
            # The gateway's phones meet voxlab on its SIP address (loopback by default).
            self.webrtc = GatewayPool(reactor, (config.sip_host, config.sip_port), config.sip_host,
                                      config.webrtc_workers, config.webrtc_ice_hosts(),
                                      on_lost=self.engine.end_calls_with)
            self.http.webrtc = self.webrtc
        self._json_log = None

    def startService(self) -> None:
        os.makedirs(self.config.data_dir, exist_ok=True)
        self.directory = Directory(self.config.directory_path, self.config.users)
        self.directory.purge_expired()
        self._open_stores()
        self.http.directory = self.directory
        self.sip.ua.registrar = Registrar(self.directory, self.config.realm,
                                          algorithms=self.config.auth_algorithms)
        if self.config.log_format == "json":
            self._start_json_log()
        try:
            what = "SIP"
            # First, so that a taken port stops the start-up before the console
            # or anything else has been set up.
            self.sip.listen()
            what = "HTTP"
            self.http.listen()
        except CannotListenError as exc:
            self.sip.stop()
            log.critical("{message}", message=cannot_listen_message(exc, self.config, what))
            pidfile = self.config.pid_file
            try:
                if pidfile.read_text().strip() == str(os.getpid()):
                    pidfile.unlink()      # twistd never gets to remove it on this way out
            except OSError:
                pass
            raise SystemExit(1) from None
        # Bound (a taken port is found above) but not read until every media
        # worker runs: a call taken earlier would have nothing to play its audio.
        for port in self.sip.listeners:
            port.stopReading()
        super().startService()
        self.engine.start()
        if self.webrtc is not None:
            self.webrtc.sip_server = (self.config.sip_host, self.sip.port)
            self.webrtc.start()
        self.engine.media.when_ready().addCallback(self._media_ready)
        log.info("voxlab {version} ready: SIP {transports} on {host}:{port}, RTP {lo}-{hi} "
                 "in {workers} media worker(s), scenarios {scenarios}, data {data}",
                 workers=len(self.engine.media.workers),
                 version=__version__, transports="+".join(self.config.transports),
                 host=self.config.sip_host, port=self.sip.port, lo=self.config.rtp_low,
                 hi=self.config.rtp_high, scenarios=str(self.config.scenarios_dir),
                 data=str(self.config.data_dir))
        self.engine.scenarios.log_table("routing")
        # Everything loaded so far lives for the whole process: keep it out of
        # the cyclic GC's passes, which then only walk per-call objects.
        gc.collect()
        gc.freeze()

    def _stopped_cleanly(self) -> None:
        # SIGTERM is how voxlab is asked to stop; once every call has had its BYE and
        # every row is written, that is a normal exit. Twisted would re-raise the signal
        # (exit status -15), which service managers and scripts read as a crash.
        import signal as _signal

        if getattr(self.reactor, "_exitSignal", None) == _signal.SIGTERM:
            self.reactor._exitSignal = None

    def _open_stores(self) -> None:
        """Call history and ApplicationStorage: SQLite files in the data directory, each
        written by a thread of its own so a slow disk never delays the reactor."""
        from voxlab.store.db import DatabaseThread
        from voxlab.store.history import History

        data = self.config.data_dir
        self._history_db = DatabaseThread(str(data / "history.sqlite"), self.reactor, name="voxlab-history")
        self.engine.history = History(self._history_db, self.config.history_retention_days)
        self.engine.history.start()
        self.engine.storage_db = DatabaseThread(str(data / "storage.sqlite"), self.reactor,
                                                name="voxlab-storage")

    def _close_stores(self) -> None:
        history = self.engine.history
        if history is not None:
            history.close()
            self._history_db.close(10.0)        # every row written before the process exits
            self.engine.history = None
        if self.engine.storage_db is not None:
            self.engine.storage_db.close(10.0)
            self.engine.storage_db = None

    def _media_ready(self, _: object) -> None:
        for port in self.sip.listeners:
            port.startReading()
        log.info("media workers up: {workers}", workers=", ".join(
            f"{w['index']} (pid {w['pid']})" for w in self.engine.media.info() if w["alive"]))

    def _start_json_log(self) -> None:
        stream = open(self.config.data_dir / "voxlab.log.jsonl", "a", buffering=1)

        def observer(event):
            try:
                stream.write(eventAsJSON(event) + "\n")
            except Exception:
                stream.write(json.dumps({"log_format": str(event.get("log_format"))}) + "\n")

        globalLogPublisher.addObserver(observer)
        self._json_log = (observer, stream)

    def stopService(self):
        # SIP stays open while the sessions end: their BYEs get their answers, and calls
        # that arrive meanwhile get 503 with Retry-After.
        d = self.engine.stop()
        if self.webrtc is not None:
            # After the sessions: their BYEs to browsers' phones get answered.
            d.addBoth(lambda _: self.webrtc.stop())
        d.addCallback(lambda _: self.sip.stop())
        d.addBoth(lambda result: (self._close_stores(), self._stopped_cleanly(), result)[2])
        if self._json_log is not None:
            globalLogPublisher.removeObserver(self._json_log[0])
            self._json_log[1].close()
        super().stopService()
        return d
