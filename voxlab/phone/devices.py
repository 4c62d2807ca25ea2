"""The sound card through PyAudio (PortAudio), an optional extra: ``pip install 'voxlab[phone]'``.

Without PyAudio, or without a usable device, :func:`open_device` raises
:class:`AudioUnavailable` with a one-line message, and the phone goes on with files (or
silence). The card is driven from a thread of its own with blocking reads and writes of
20 ms (160 samples at 8 kHz): the card's clock paces that thread, the reactor's 20 ms
LoopingCall paces the network, and the two :class:`~voxlab.phone.drift.DriftBuffer`
queues between them absorb the difference (see that module for how).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from voxlab.phone.drift import FRAME, DriftBuffer

RATE = 8000
# A device that is this far ahead of the wall clock has no clock of its own (ALSA's
# null plugin returns at once): the thread then sleeps, so it runs at real time. A real
# card never gets here: its reads block for each 20 ms.
AHEAD_LIMIT = 0.1

__all__ = ["AudioUnavailable", "DeviceInfo", "DeviceAudio", "list_devices", "open_device",
           "load_pyaudio"]


class AudioUnavailable(RuntimeError):
    """No sound card to use: the message is one line for the user."""


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device."""

    index: int
    name: str
    inputs: int
    outputs: int
    rate: float
    host_api: str
    default_input: bool = False
    default_output: bool = False

    def line(self) -> str:
        marks = "".join([" [default in]" if self.default_input else "",
                         " [default out]" if self.default_output else ""])
        return (f"{self.index:3d}  {self.name}  ({self.host_api}; in {self.inputs}, "
                f"out {self.outputs}, {self.rate:.0f} Hz){marks}")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """ALSA and JACK print pages of probing chatter on file descriptor 2 while PortAudio
    looks for devices; that would garble the terminal UI and bury the one line that
    matters. Send fd 2 to /dev/null meanwhile (Python's own sys.stderr is untouched)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_pyaudio():
    """The pyaudio module; AudioUnavailable when it is not installed."""
    try:
        import pyaudio  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise AudioUnavailable(
            "PyAudio is not installed (pip install 'voxlab[phone]', which needs Debian's "
            "portaudio19-dev): no microphone or speaker; --audio-in/--audio-out files still work"
        ) from None
    return pyaudio


def _portaudio():
    pyaudio = load_pyaudio()
    with quiet_stderr():
        return pyaudio, pyaudio.PyAudio()


def list_devices() -> list[DeviceInfo]:
    """Every PortAudio device (AudioUnavailable without PyAudio)."""
    pyaudio, pa = _portaudio()
    try:
        return _devices(pa)
    finally:
        with quiet_stderr():
            pa.terminate()


def _default_index(pa, which: str) -> int | None:
    try:
        info = (pa.get_default_input_device_info() if which == "in"
                else pa.get_default_output_device_info())
    except (IOError, OSError):
        return None
    return int(info["index"])


def _devices(pa) -> list[DeviceInfo]:
    din, dout = _default_index(pa, "in"), _default_index(pa, "out")
    out = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        try:
            api = pa.get_host_api_info_by_index(d["hostApi"])["name"]
        except Exception:
            api = "?"
        out.append(DeviceInfo(i, d["name"], int(d["maxInputChannels"]),
                              int(d["maxOutputChannels"]), float(d["defaultSampleRate"]), api,
                              i == din, i == dout))
    return out


def parse_device(text: str | None) -> tuple[int | None, int | None]:
    """``--device N`` (both ways) or ``--device IN,OUT``; None is the default device."""
    if text is None or text == "":
        return None, None
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--device {text}: give a device number, or IN,OUT (see --list-devices)")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    return int(parts[0]), int(parts[1])


def open_device(device: str | None = None, want_input: bool = True,
                want_output: bool = True) -> "DeviceAudio":
    """Check that the card can do 8 kHz mono 16-bit both ways (or the ways wanted) and
    return a :class:`DeviceAudio` for it; AudioUnavailable with the reason otherwise."""
    in_index, out_index = parse_device(device)
    pyaudio, pa = _portaudio()
    try:
        devices = {d.index: d for d in _devices(pa)}
        if not devices:
            raise AudioUnavailable("no audio device found (PortAudio lists none): "
                                   "use --audio-in/--audio-out files")
        if want_input:
            in_index = _pick(devices, in_index, _default_index(pa, "in"), "inputs")
        if want_output:
            out_index = _pick(devices, out_index, _default_index(pa, "out"), "outputs")
        try:
            with quiet_stderr():
                if want_input:
                    pa.is_format_supported(RATE, input_device=in_index, input_channels=1,
                                           input_format=pyaudio.paInt16)
                if want_output:
                    pa.is_format_supported(RATE, output_device=out_index, output_channels=1,
                                           output_format=pyaudio.paInt16)
        except ValueError as exc:
            raise AudioUnavailable(f"the audio device cannot do 8 kHz mono 16-bit ({exc}); "
                                   "pick another with --device (see --list-devices)") from None
    except BaseException:
        with quiet_stderr():
            pa.terminate()
        raise
    return DeviceAudio(pyaudio, pa, in_index if want_input else None,
                       out_index if want_output else None, devices)


def _pick(devices: dict[int, DeviceInfo], wanted: int | None, default: int | None,
          kind: str) -> int:
    index = wanted if wanted is not None else default
    if index is None:
        raise AudioUnavailable(f"no default audio device with {kind}: pick one with --device "
                               "(see --list-devices), or use --audio-in/--audio-out files")
    if index not in devices:
        raise AudioUnavailable(f"no audio device {index} (see --list-devices)")
    if getattr(devices[index], kind) < 1:
        raise AudioUnavailable(f"audio device {index} ({devices[index].name}) has no {kind}")
    return index


class DeviceAudio:
    """Microphone and speaker of one PortAudio device, as a source and a sink of 20 ms
    frames. Streams are open only while a call has media (``start``/``stop``)."""

    def __init__(self, pyaudio, pa, in_index: int | None, out_index: int | None,
                 devices: dict[int, DeviceInfo]) -> None:
        self._pyaudio = pyaudio
        self._pa = pa
        self.in_index = in_index
        self.out_index = out_index
        self.devices = devices
        self.capture = DriftBuffer()
        self.playout = DriftBuffer()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.on_error: Callable[[str], None] | None = None   # called in the device thread
        self.frames = 0                  # 20 ms periods the device thread has run
        self.paced = 0                   # of them, sleeps for a device without a clock
        self.error: str | None = None

    def describe(self) -> str:
        names = []
        if self.in_index is not None:
            names.append(f"mic {self.in_index} {self.devices[self.in_index].name}")
        if self.out_index is not None:
            names.append(f"speaker {self.out_index} {self.devices[self.out_index].name}")
        return ", ".join(names)

    # -- source and sink (the reactor thread)
    def read(self) -> np.ndarray:
        return self.capture.get()

    def write(self, frame: np.ndarray) -> None:
        self.playout.put(frame)

    # -- streams
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Open the streams and run the device thread (if not running)."""
        if self.running:
            return
        self.capture.clear()
        self.playout.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="voxlab-phone-audio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the streams (waits for at most one period or so)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def close(self) -> None:
        self.stop()
        with quiet_stderr():
            self._pa.terminate()

    def _open(self):
        kw = dict(format=self._pyaudio.paInt16, channels=1, rate=RATE, frames_per_buffer=FRAME)
        streams = []
        with quiet_stderr():
            if self.in_index is not None:
                streams.append(self._pa.open(input=True, input_device_index=self.in_index, **kw))
            else:
                streams.append(None)
            if self.out_index is not None:
                streams.append(self._pa.open(output=True, output_device_index=self.out_index, **kw))
            else:
                streams.append(None)
        return streams

    def _run(self) -> None:
        try:
            mic, speaker = self._open()
        except Exception as exc:
            self._fail(f"cannot open the audio device: {exc}")
            return
        start = time.monotonic()
        count = 0
        try:
            while not self._stop.is_set():
                if mic is not None:
                    data = mic.read(FRAME, exception_on_overflow=False)
                    frame = np.frombuffer(data, "<i2").astype(np.int16)
                    if len(frame) == FRAME:
                        self.capture.put(frame)
                if speaker is not None:
                    speaker.write(self.playout.get().astype("<i2").tobytes())
                count += 1
                self.frames = count
                ahead = count * 0.020 - (time.monotonic() - start)
                if ahead > AHEAD_LIMIT:
                    self.paced += 1
                    time.sleep(ahead - AHEAD_LIMIT / 2)
        except Exception as exc:
            self._fail(f"audio device error: {exc}")
        finally:
            for s in (mic, speaker):
                if s is not None:
                    try:
                        with quiet_stderr():
                            s.stop_stream()
                            s.close()
                    except Exception:
                        pass

    def _fail(self, message: str) -> None:
        self.error = message
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                pass
