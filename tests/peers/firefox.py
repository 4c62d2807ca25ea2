"""Debian's Firefox ESR as a test peer, driven over WebDriver BiDi (Firefox's own remote
protocol, no geckodriver and no downloaded browser): a page to load, JavaScript to run in
it, with a fake microphone (Firefox's fake stream plays a 1 kHz tone).

Playwright cannot drive this Firefox (it needs BiDi commands ESR lacks), so this is a small
client of the protocol's four commands the tests use."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import websocket

from tests.peers.process import end_process

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")

# A fake microphone, no permission prompt, autoplay allowed, and real host addresses in
# ICE candidates (the default hides them behind mDNS names, which aioice on a host
# without multicast cannot resolve).
PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "remote.prefs.recommended": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "app.update.enabled": False,
    "network.captive-portal-service.enabled": False,
}


class BiDiError(Exception):
    """A command the browser refused, or a script that threw."""


class Firefox:
    """One headless Firefox with a fresh profile and one tab."""

    def __init__(self, tmp: Path) -> None:
        if FIREFOX is None:
            raise RuntimeError("firefox-esr is not installed")
        self.profile = Path(tempfile.mkdtemp(prefix="firefox-", dir=tmp))
        (self.profile / "user.js").write_text("".join(
            f'user_pref("{k}", {json.dumps(v)});\n' for k, v in PREFS.items()))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([FIREFOX, "--headless", "--no-remote", "--profile",
                                      str(self.profile), f"--remote-debugging-port={port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.n = 0
        deadline = time.monotonic() + 30
        while True:
            try:
                # Firefox refuses a remote-protocol client that sends an Origin.
                self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/session",
                                                      timeout=30, suppress_origin=True)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("Firefox's remote protocol did not come up")
                time.sleep(0.2)
        self.command("session.new", capabilities={})
        self.context = self.command("browsingContext.getTree")["contexts"][0]["context"]

    def command(self, method: str, **params) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.n:
                if message.get("type") == "error":
                    raise BiDiError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]

    def goto(self, url: str) -> None:
        self.command("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def evaluate(self, expression: str, await_promise: bool = True):
        """The value of ``expression`` in the page (a JSON-able one), as a user's action
        (so that it may start audio)."""
        result = self.command("script.evaluate", expression=f"(async () => JSON.stringify(await ({expression})))()",
                              target={"context": self.context}, awaitPromise=await_promise,
                              userActivation=True)
        if result.get("type") == "exception":
            raise BiDiError(result["exceptionDetails"].get("text", "script failed"))
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    def wait_for(self, expression: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            time.sleep(0.2)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        end_process(self.proc, grace=3)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)     # content processes left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(self.profile, ignore_errors=True)
