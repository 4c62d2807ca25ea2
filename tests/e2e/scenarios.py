"""Scenario sources the e2e tests write into their own scenarios dirs."""

# Never answers: the caller rings until it CANCELs.
RING_FOREVER = """
def on_alerting(e):
    pass   # no answer, no hangup: the call stays ringing until the caller cancels


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

# Answers at once; ends the session when the caller hangs up.
ANSWER = """
def on_alerting(e):
    call = e.call
    call.answer()
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

ECHO = """
def on_alerting(e):
    call = e.call
    call.answer()
    call.send_media_to(call)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

# Reports DTMF: a log line per digit, and the digit sent back as RFC 4733.
DIGITS = """
def on_alerting(e):
    call = e.call

    def tone(ev):
        Logger.write(f"TONE {ev.tone}")
        call.send_digits(ev.tone)

    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.handle_tones(True)
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""
