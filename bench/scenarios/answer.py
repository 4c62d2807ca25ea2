# answer: the call-rate benchmark's callee.  Answers at once, no media routing;
# the session ends when the caller hangs up.


def on_alerting(e):
    call = e.call
    call.answer()
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
