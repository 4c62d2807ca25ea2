"""A WebRTC gateway worker process: browsers' WebRTC on one side, SIP and RTP to voxlab
on the other.

Started and restarted by the main process (:mod:`voxlab.webrtc.pool`), which hands it a
control socket (AMP, :mod:`voxlab.webrtc.control`). Every logged-in browser is one
:class:`BrowserPhone`: a SIP phone (:class:`voxlab.phone.agent.PhoneAgent`, registered
with the browser user's own credentials, so voxlab's registrar checks them and
``call_user`` rings the tab like any phone) whose microphone and speaker are an aiortc
peer connection. A call is one RTCPeerConnection, offered by the browser; its audio is
G.711 both ways (the browser offers PCMU/PCMA, and voxlab's media are 8 kHz anyway),
which keeps Opus's cost out of this process.

Runs Twisted on the asyncio reactor so that aiortc (asyncio) and voxlab's SIP code
(Twisted) share one loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from typing import Any


def _install_reactor() -> Any:
    try:
        import uvloop          # faster when present; plain asyncio otherwise
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor
    asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor


def offer_only(addresses: list[str]) -> None:
    """Make aioice gather candidates on exactly these addresses. It leaves 127.0.0.1 out of
    its own list, which on a loopback-only host (and for a server bound to 127.0.0.1) is
    the only address the browser can reach."""
    import aioice.ice
    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
        a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


STATES = {"calling": "calling", "ringing": "ringing", "connected": "connected",
          "held": "held", "resumed": "connected"}


class BrowserPhone:
    """One browser connection: its SIP phone and the peer connection of its current call."""

    def __init__(self, worker: "GatewayWorker", client: str) -> None:
        self.worker = worker
        self.client = client
        self.agent: Any = None
        self.user: str | None = None
        self.pc: Any = None
        self.speaker: Any = None
        from voxlab.webrtc.bridge import BrowserMic
        self.mic = BrowserMic()
        self._login: Any = None
        # One request at a time per browser: a double-clicked "call", a hang-up sent while
        # the peer connection is still being set up, a logout during a login, each waits
        # for the one before it instead of racing it.
        self.lock = asyncio.Lock()

    def notify(self, **message: Any) -> None:
        self.worker.notify(self.client, message)

    # -- requests
    async def op_login(self, m: dict) -> dict:
        from voxlab.phone.agent import PhoneAgent, PhoneConfig
        user, password = str(m.get("user") or "").strip(), m.get("password")
        if not user:
            return {"ok": False, "error": "login needs a user"}
        if self.agent is not None:
            return {"ok": False, "error": f"already logged in as {self.user}: log out first"}
        config = PhoneConfig(server=self.worker.sip_server, user=user,
                             password=None if password is None else str(password),
                             local=(self.worker.host, 0), codec="PCMU", expires=300)
        agent = PhoneAgent(self.worker.reactor, config, source=self.mic,
                           listener=lambda event: self._event(agent, event))
        self._login = asyncio.get_event_loop().create_future()
        self.agent, self.user = agent, user
        try:
            agent.start()
        except Exception as exc:
            self.agent = self.user = None
            try:
                agent.sip.stop()
            except Exception:
                pass
            return {"ok": False, "error": f"cannot start a SIP phone: {exc}"}
        # Before the registrar answers: should this worker die now, the main process
        # still knows which SIP address was this browser's.
        self.notify(event="sip-contact", contact=f"{agent.host}:{agent.port}")
        timer = self.worker.reactor.callLater(5.0, self._login_done, "no answer from the registrar")
        why = await self._login
        if timer.active():
            timer.cancel()
        if why is not None:
            await self._stop_agent()
            return {"ok": False, "error": f"login as {user} failed: {why}"}
        return {"ok": True, "user": user, "contact": f"{agent.host}:{agent.port}"}

    def _login_done(self, failure: str | None) -> None:
        waiting, self._login = self._login, None
        if waiting is not None and not waiting.done():
            waiting.set_result(failure)

    async def op_logout(self, m: dict) -> dict:
        await self._stop_agent()
        return {"ok": True}

    async def op_call(self, m: dict) -> dict:
        agent = self._need_agent()
        to = str(m.get("to") or "").strip()
        if not to:
            return {"ok": False, "error": "call needs a destination (to)"}
        if agent.call is not None:
            return {"ok": False, "error": "a call is already in progress: hang it up first"}
        sdp = await self._open_peer(m.get("sdp"))
        try:
            agent.dial(to)
        except (ValueError, RuntimeError) as exc:
            await self._close_peer()
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "sdp": sdp}

    async def op_answer(self, m: dict) -> dict:
        agent = self._need_agent()
        call = agent.call
        if call is None or call.direction != "in" or call.state != "incoming":
            return {"ok": False, "error": "no incoming call to answer"}
        sdp = await self._open_peer(m.get("sdp"))
        if agent.call is not call or call.state != "incoming":
            await self._close_peer()
            return {"ok": False, "error": "the caller hung up"}
        call.answer()
        return {"ok": True, "sdp": sdp}

    async def op_reject(self, m: dict) -> dict:
        agent = self._need_agent()
        if agent.call is None or agent.call.state != "incoming":
            return {"ok": False, "error": "no incoming call to reject"}
        agent.reject()
        return {"ok": True}

    async def op_hangup(self, m: dict) -> dict:
        agent = self._need_agent()
        if agent.call is None:
            return {"ok": False, "error": "no call to hang up"}
        agent.hangup()
        return {"ok": True}

    async def op_dtmf(self, m: dict) -> dict:
        agent = self._need_agent()
        digits = str(m.get("digits") or "")
        if not digits or any(d not in "0123456789*#ABCDabcd" for d in digits):
            return {"ok": False, "error": f"DTMF digits are 0-9 * # A-D, not {digits!r}"}
        if agent.call is None or agent.call.state != "connected":
            return {"ok": False, "error": "DTMF needs a connected call"}
        agent.send_digits(digits)
        return {"ok": True}

    async def op_mute(self, m: dict) -> dict:
        agent = self._need_agent()
        if agent.call is None:
            return {"ok": False, "error": "no call to mute"}
        agent.call.audio.muted = bool(m.get("on", True))
        return {"ok": True, "muted": agent.call.audio.muted}

    async def op_hold(self, m: dict) -> dict:
        agent = self._need_agent()
        call = agent.call
        if call is None or call.state != "connected":
            return {"ok": False, "error": "hold needs a connected call"}
        if bool(m.get("on", True)) != bool(call.on_hold):
            call.toggle_hold()
        return {"ok": True}

    def _need_agent(self) -> Any:
        if self.agent is None:
            raise RequestError("log in first")
        return self.agent

    # -- the phone's events
    def _event(self, agent: Any, event: Any) -> None:
        if agent is not self.agent:
            return               # a phone already logged out, still finishing
        kind, text = event.kind, event.text
        if kind == "registered":
            self._login_done(None)
            self.notify(event="registered", user=self.user)
        elif kind == "registration-failed":
            if self._login is not None:
                self._login_done(text.split(": ", 1)[-1])
            else:
                # A refresh refused: the tab is logged out, as it is told.
                self.notify(event="unregistered", reason=text)
                self.worker.background(self._stop_agent())
        elif kind == "incoming":
            call = self.agent.call
            invite = call.leg.invite
            self.notify(event="incoming", **{"from": str(invite.from_addr.uri),
                                             "display": invite.from_addr.display_name or ""})
            self.notify(event="state", state="incoming")
        elif kind in STATES:
            call = self.agent.call
            self.notify(event="state", state=STATES[kind], text=text,
                        codec=call.codec if call is not None else None)
        elif kind in ("ended", "failed", "missed"):
            self.notify(event="state", state="ended", reason=text)
            self.worker.background(self._close_peer())
        elif kind not in ("listening", "audio"):
            self.notify(event="log", kind=kind, text=text)

    # -- the peer connection
    async def _open_peer(self, offer: Any) -> str:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.rtcrtpsender import RTCRtpSender
        from voxlab.webrtc.bridge import BrowserSpeaker
        if not isinstance(offer, str) or "m=audio" not in offer:
            raise RequestError("an SDP offer with audio (sdp) is needed")
        await self._close_peer()
        # No ICE servers: aiortc would otherwise ask a public STUN server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        self.speaker = speaker = BrowserSpeaker()

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self.mic.attach(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc is self.pc and pc.connectionState == "failed":
                self.notify(event="log", kind="error", text="the WebRTC connection failed")
                if self.agent is not None and self.agent.call is not None:
                    self.agent.hangup()

        # The transceiver (and its codec preferences) before the offer: aiortc picks the
        # answer's codecs while it applies the offer, so set later they would not count,
        # and the browser's first choice (Opus) would win.
        transceiver = pc.addTransceiver(speaker, direction="sendrecv")
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                         if c.mimeType.lower() in ("audio/pcmu", "audio/pcma")])
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as exc:
            await self._close_peer()
            raise RequestError(f"unusable SDP offer (it needs PCMU or PCMA audio): {exc}") from None
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self._close_peer()
            raise RequestError(f"cannot answer the offer (it needs PCMU or PCMA): {exc}") from None
        if self.agent is None or pc is not self.pc:
            await self._close_peer()
            raise RequestError("logged out meanwhile")
        self.agent.sink = speaker
        return pc.localDescription.sdp

    async def _close_peer(self) -> None:
        pc, self.pc = self.pc, None
        self.mic.detach()
        if self.speaker is not None:
            self.speaker.stop()
            self.speaker = None
        if pc is not None:
            await pc.close()

    async def _stop_agent(self) -> None:
        agent, self.agent = self.agent, None
        self.user = None
        self._login_done("logged out")
        try:
            await self._close_peer()
        finally:
            if agent is not None:
                from twisted.internet import defer
                await defer.Deferred.asFuture(agent.stop(), asyncio.get_event_loop())

    async def close(self) -> None:
        await self._stop_agent()

    @property
    def in_call(self) -> bool:
        return self.agent is not None and self.agent.call is not None


class RequestError(Exception):
    """A request that cannot be carried out: its message goes back to the browser."""


def _amp_side(worker: "GatewayWorker") -> Any:
    from twisted.internet import defer
    from voxlab.media.control import QuietAMP
    from voxlab.webrtc import control

    class WorkerSide(QuietAMP):
        @control.PhoneRequest.responder
        def phone_request(self, client: str, message: bytes) -> defer.Deferred:
            return defer.Deferred.fromFuture(asyncio.ensure_future(worker.request(client, message)))

        @control.ClientGone.responder
        def client_gone(self, client: str) -> dict:
            worker.background(worker.forget(client))
            return {}

        def connectionLost(self, reason: Any) -> None:
            super().connectionLost(reason)
            worker.channel_lost()

    return WorkerSide()


class GatewayWorker:
    """The worker's state: its browser phones and its channel to the main process."""

    def __init__(self, reactor: Any, index: int, sip_server: tuple[str, int], host: str) -> None:
        self.reactor = reactor
        self.index = index
        self.sip_server = sip_server
        self.host = host
        self.phones: dict[str, BrowserPhone] = {}
        self.proto: Any = None
        self._tasks: set[asyncio.Task] = set()

    def background(self, coro: Any) -> None:
        """Run ``coro`` on its own, kept until it ends; what it raises is printed (the
        main process logs it), never lost."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                import traceback
                traceback.print_exception(t.exception())
        task.add_done_callback(done)

    async def request(self, client: str, message: bytes) -> dict:
        try:
            m = json.loads(message)
            op = str(m.get("op"))
        except (ValueError, AttributeError):
            return {"reply": json.dumps({"ok": False, "error": "not a JSON object"}).encode()}
        phone = self.phones.get(client)
        if phone is None:
            phone = self.phones[client] = BrowserPhone(self, client)
        handler = getattr(phone, f"op_{op}", None)
        if handler is None:
            reply = {"ok": False, "error": f"unknown op {op!r}"}
        else:
            try:
                async with phone.lock:
                    reply = await handler(m)
            except RequestError as exc:
                reply = {"ok": False, "error": str(exc)}
            except Exception as exc:       # one browser's bad luck must not end the worker
                import traceback
                traceback.print_exc()
                reply = {"ok": False, "error": f"{op} failed: {exc.__class__.__name__}: {exc}"}
        return {"reply": json.dumps(reply).encode()}

    async def forget(self, client: str) -> None:
        phone = self.phones.pop(client, None)
        if phone is not None:
            await phone.close()

    def notify(self, client: str, message: dict) -> None:
        from voxlab.webrtc import control
        if self.proto is not None and self.proto.transport is not None:
            self.proto.callRemote(control.PhoneNotice, client=client, message=json.dumps(message).encode())

    def send_stats(self) -> None:
        from voxlab.webrtc import control
        if self.proto is not None and self.proto.transport is not None:
            self.proto.callRemote(control.GatewayStats, clients=len(self.phones),
                                  calls=sum(1 for p in self.phones.values() if p.in_call),
                                  cpu=time.process_time())

    def channel_lost(self) -> None:
        # The main process has gone (or closed us to stop): hang up and leave.
        async def leave() -> None:
            for client in list(self.phones):
                try:
                    await self.forget(client)
                except Exception:
                    pass          # leaving anyway
            self.reactor.stop()
        self.background(leave())
        self.reactor.callLater(3.0, lambda: self.reactor.running and self.reactor.stop())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxlab-webrtc-worker")
    parser.add_argument("--fd", type=int, required=True, help="the control socket (inherited)")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--sip", required=True, help="voxlab's SIP address, HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1", help="where the SIP phones and RTP bind")
    parser.add_argument("--ice-host", action="append", default=[],
                        help="offer ICE candidates on this address only (repeatable)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the main process stops us
    reactor = _install_reactor()
    from twisted.internet import task
    from twisted.internet.protocol import Factory
    from twisted.logger import FileLogObserver, formatEvent, globalLogBeginner
    globalLogBeginner.beginLoggingTo([FileLogObserver(sys.stderr, lambda e: formatEvent(e) + "\n"
                                                      + (e["log_failure"].getTraceback()
                                                         if "log_failure" in e else ""))],
                                     redirectStandardIO=False)
    if args.ice_host:
        offer_only(args.ice_host)
    host, _, port = args.sip.rpartition(":")
    worker = GatewayWorker(reactor, args.index, (host.strip("[]"), int(port)), args.host)
    # Import what a first call needs now, not while a browser waits for its answer.
    import importlib
    for module in ("aiortc", "voxlab.phone.agent", "voxlab.webrtc.bridge"):
        importlib.import_module(module)

    def made(_: Any = None) -> Any:
        worker.proto = _amp_side(worker)
        return worker.proto

    reactor.adoptStreamConnection(args.fd, socket.AF_UNIX, Factory.forProtocol(made))
    os.close(args.fd)
    stats = task.LoopingCall(worker.send_stats)
    from voxlab.webrtc.control import STATS_INTERVAL
    stats.start(STATS_INTERVAL, now=True)
    print(f"webrtc gateway worker {args.index} (pid {os.getpid()}) up; SIP to {args.sip}",
          file=sys.stderr, flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
