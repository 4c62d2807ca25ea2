"""The TTS and URL segments of players on a real reactor (pytest-twisted): espeak-ng as a
subprocess, sentences in order, the cache, failures with clear messages; HTTP fetches
from an in-process twisted.web server: WAV decoded and resampled, 404, refused, not a
WAV, MP3, too big, no answer, redirects."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.web import pages, resource, server, util

from voxlab.media import fetch, tts
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.fetch import UrlSource
from voxlab.media.tones import sine
from voxlab.media.tts import TtsSource, split_sentences
from voxlab.media.units import UnitContext
from voxlab.media.wav import read_wav

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def context() -> UnitContext:
    return UnitContext(reactor, lambda name, event, data: None)


def run(source) -> defer.Deferred:
    """Start ``source``; fires with the list of pcm lengths it was fed, once complete."""
    done: defer.Deferred = defer.Deferred()
    feeds: list[int] = []

    def changed():
        if len(source.pcm) != (feeds[-1] if feeds else 0):
            feeds.append(len(source.pcm))
        if source.complete and not done.called:
            done.callback(feeds)

    source.on_change = changed
    source.start()
    # A source that never completes must fail its test, not hang the whole run.
    return done.addTimeout(30, reactor)


# ---------------------------------------------------------------- TTS

def test_split_sentences():
    assert split_sentences("Hello there. How are you?  Fine!\n\nBye") == \
        ["Hello there.", "How are you?", "Fine!", "Bye"]
    assert split_sentences("Hello, this is a test of the speech synthesiser.") == \
        ["Hello, this is a test of the speech synthesiser."]
    long = ", ".join(["word " * 8] * 12)
    pieces = split_sentences(long)
    assert len(pieces) > 1 and all(len(p) <= 200 for p in pieces)
    assert " ".join(pieces).split() == long.split()
    assert split_sentences("   ") == []


@needs_espeak
@pytest_twisted.inlineCallbacks
def test_tts_speaks_sentences_in_order_and_caches():
    ctx = context()
    text = "One two three. Four five six! Seven eight nine?"
    source = TtsSource(ctx, text, voice="en_US", rate=200)
    feeds = yield run(source)
    assert source.error is None
    assert len(feeds) == 3                      # one feed per sentence, as each is ready
    # the same audio as espeak-ng's own output for each sentence, in order
    parts = []
    for sentence in split_sentences(text):
        wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en-us", "-s", "200", sentence],
                             capture_output=True, check=True).stdout
        parts.append(read_wav(io.BytesIO(wav), 8000))
    assert np.array_equal(source.pcm, np.concatenate(parts))
    assert rms_dbfs(source.pcm) > -40
    # again: from the worker's cache, at once
    again = TtsSource(ctx, text, voice="en-US", rate=200)
    done = run(again)
    assert again.complete and done.called and np.array_equal(again.pcm, source.pcm)


@needs_espeak
@pytest_twisted.inlineCallbacks
def test_tts_bad_voice_fails_clearly():
    source = TtsSource(context(), "Hello", voice="xx-nothing")
    yield run(source)
    assert "no espeak-ng voice 'xx-nothing'" in source.error


@pytest_twisted.inlineCallbacks
def test_tts_without_espeak_fails_clearly(monkeypatch):
    monkeypatch.setattr(tts, "ESPEAK", "no-such-espeak-ng")
    source = TtsSource(context(), "Hello")
    yield run(source)
    assert "no-such-espeak-ng is not installed" in source.error


def test_tts_rate_out_of_range_fails():
    source = TtsSource(context(), "Hello", rate=5)
    source.start()
    assert source.complete and "between 80 and 450" in source.error


@needs_espeak
@pytest_twisted.inlineCallbacks
def test_tts_stop_kills_the_synthesiser_and_feeds_nothing_more():
    source = TtsSource(context(), " ".join(f"Sentence number {i}." for i in range(30)))
    pending = run(source)
    proto = source._running
    assert proto is not None
    source.stop()
    fed = len(source.pcm)
    yield task.deferLater(reactor, 0.5, lambda: None)
    assert proto.transport.pid is None          # reaped
    assert not source.complete and len(source.pcm) == fed
    pending.cancel()                          # it never completes, by design
    pending.addErrback(lambda failure: None)


# ---------------------------------------------------------------- URL

def wav_bytes(pcm: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        data = np.repeat(pcm, channels) if channels > 1 else pcm
        w.writeframes(data.astype("<i2").tobytes())
    return out.getvalue()


class Static(resource.Resource):
    isLeaf = True

    def __init__(self, body: bytes, ctype: bytes = b"audio/wav") -> None:
        super().__init__()
        self.body, self.ctype = body, ctype

    def render_GET(self, request):
        request.setHeader(b"content-type", self.ctype)
        return self.body


class Silent(resource.Resource):
    """Never answers."""
    isLeaf = True

    def render_GET(self, request):
        return server.NOT_DONE_YET


class Stalls(resource.Resource):
    """Sends a little of the body, then nothing."""
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-length", b"100000")
        request.write(b"RIFF" + bytes(1020))
        return server.NOT_DONE_YET


class Endless(resource.Resource):
    """A body that never ends (no Content-Length): 8 KB every 10 ms."""
    isLeaf = True

    def render_GET(self, request):
        loop = task.LoopingCall(request.write, b"\0" * 8192)
        loop.start(0.01)
        request.notifyFinish().addBoth(lambda _: loop.running and loop.stop())
        return server.NOT_DONE_YET


class Root(resource.Resource):
    def getChild(self, path, request):
        return pages.notFound()


@pytest.fixture
def web():
    root = Root()
    root.putChild(b"a700.wav", Static(wav_bytes(sine(700, 1.0, rate=22050), 22050, channels=2)))
    root.putChild(b"page.html", Static(b"<html>hello</html>", b"text/html"))
    root.putChild(b"song.mp3", Static(b"ID3\x04\0\0\0\0\0\0" + bytes(500), b"audio/mpeg"))
    root.putChild(b"silent.wav", Silent())
    root.putChild(b"endless.wav", Endless())
    root.putChild(b"stalls.wav", Stalls())
    root.putChild(b"moved.wav", util.Redirect(b"/a700.wav"))
    port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    port.stopListening()


@pytest_twisted.inlineCallbacks
def test_url_wav_any_rate_and_channels_is_resampled(web):
    for path in ("/a700.wav", "/moved.wav"):
        source = UrlSource(context(), web + path)
        yield run(source)
        assert source.error is None, source.error
        assert len(source.pcm) == 8000
        assert abs(dominant_frequency(source.pcm) - 700) < 2


@pytest_twisted.inlineCallbacks
def test_url_failures_say_why(web, monkeypatch):
    probe = reactor.listenTCP(0, server.Site(resource.Resource()), interface="127.0.0.1")
    closed = probe.getHost().port
    yield probe.stopListening()
    cases = {
        web + "/missing.wav": "404 Not Found",
        web + "/page.html": "not a WAV file (18 bytes of text/html)",
        web + "/song.mp3": "MP3 is not supported (only WAV files)",
        f"http://127.0.0.1:{closed}/x.wav": "connection refused",
        "ftp://example.com/x.wav": "not an http(s) URL",
    }
    for url, words in cases.items():
        source = UrlSource(context(), url)
        yield run(source)
        assert source.error == f"cannot play {url}: {words}"
        assert len(source.pcm) == 0


@pytest_twisted.inlineCallbacks
def test_url_timeouts(web, monkeypatch):
    monkeypatch.setattr(fetch, "TIMEOUT", 0.3)
    source = UrlSource(context(), web + "/silent.wav")      # no headers, ever
    yield run(source)
    assert source.error == f"cannot play {web}/silent.wav: no answer within 0.3 s"
    source = UrlSource(context(), web + "/stalls.wav")      # headers and 1 KB, then nothing
    yield run(source)
    assert source.error == f"cannot play {web}/stalls.wav: the server sent nothing for 0.3 s"


@pytest_twisted.inlineCallbacks
def test_url_size_limit_stops_reading(web, monkeypatch):
    monkeypatch.setattr(fetch, "MAX_BYTES", 100_000)
    source = UrlSource(context(), web + "/endless.wav")
    yield run(source)
    assert source.error == f"cannot play {web}/endless.wav: bigger than 100000 bytes"
