"""The twistd service tree: SIP transports, the engine (sessions + media clock), the console."""

from __future__ import annotations

import gc
import json
import os

from twisted.application import service
from twisted.logger import Logger, eventAsJSON, globalLogPublisher

from voxlab import __version__
from voxlab.config import Config
from voxlab.console.service import ConsoleService
from voxlab.engine.manager import Engine
from voxlab.engine.routing import RoutingRules
from voxlab.sip.transport import SipTransportLayer

log = Logger()


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
        rules = RoutingRules(config.scenarios_dir, config.routes + config.routes_file_rules())
        self.engine = Engine(reactor, rules, config.rtp_host, config.rtp_low, config.rtp_high,
                             codecs=config.codecs, handler_budget=config.handler_budget)
        self.sip = SipTransportLayer(reactor, config.sip_host, config.sip_port, self.engine,
                                     config.transports)
        ConsoleService(self.engine, config, reactor).setServiceParent(self)
        self._json_log = None

    def startService(self) -> None:
        os.makedirs(self.config.data_dir, exist_ok=True)
        if self.config.log_format == "json":
            self._start_json_log()
        super().startService()
        self.engine.start()
        self.sip.listen()
        log.info("voxlab {version} ready: SIP {transports} on {host}:{port}, RTP {lo}-{hi}, "
                 "scenarios {scenarios}, data {data}",
                 version=__version__, transports="+".join(self.config.transports),
                 host=self.config.sip_host, port=self.sip.port, lo=self.config.rtp_low,
                 hi=self.config.rtp_high, scenarios=str(self.config.scenarios_dir),
                 data=str(self.config.data_dir))
        for rule in self.engine.routing.rules:
            log.info("route {rule}", rule=str(rule))
        # Everything loaded so far lives for the whole process: keep it out of
        # the cyclic GC's passes, which then only walk per-call objects.
        gc.collect()
        gc.freeze()

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
        self.engine.stop()
        d = self.sip.stop()
        if self._json_log is not None:
            globalLogPublisher.removeObserver(self._json_log[0])
            self._json_log[1].close()
        super().stopService()
        return d
