"""``voxlab phone``: a terminal softphone on voxlab's own SIP and RTP code.

Layers, bottom up (each module has one job):

- :mod:`voxlab.phone.drift`    the bounded frame queue between the sound card's clock and
                               the network's (clock drift: drop / repeat a frame)
- :mod:`voxlab.phone.sources`  WAV files as microphone and speaker
- :mod:`voxlab.phone.devices`  PyAudio (optional): the real microphone and speaker
- :mod:`voxlab.phone.audio`    one call's RTP: G.711, jitter buffer, RFC 4733, stats, levels
- :mod:`voxlab.phone.offer`    SDP offer/answer for the phone's one audio stream
- :mod:`voxlab.phone.register` the REGISTER client (Digest, refresh, unregister)
- :mod:`voxlab.phone.call`     one call: its SIP leg's listener, offer/answer, hold, DTMF
- :mod:`voxlab.phone.agent`    the phone: listen, register, place and take calls (one at a time)
- :mod:`voxlab.phone.headless` state lines on stdout; :mod:`voxlab.phone.ui` the
                               prompt_toolkit screen
- :mod:`voxlab.phone.app`      ``voxlab phone``: wiring, signals, exit status

The phone is not the server: it runs its audio in its own reactor (a 20 ms LoopingCall),
with no media worker processes.
"""
