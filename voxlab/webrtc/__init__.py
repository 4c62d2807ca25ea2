"""The WebRTC gateway: worker processes that terminate WebRTC towards browsers (aiortc, on
asyncio) and meet voxlab as ordinary SIP user agents with plain RTP on loopback.

Like :mod:`voxlab.phone`, this package is a *client* of voxlab: it speaks SIP and RTP to
it and knows nothing of sessions. The main process only supervises the workers and relays
the browsers' signalling (:mod:`voxlab.webrtc.pool`).
"""
