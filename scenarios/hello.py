# hello: answers, plays a greeting, hangs up when it finishes.


def on_alerting(e):
    call = e.call

    def connected(ev):
        call.start_playback("hello.wav")

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.PlaybackFinished, lambda ev: call.hangup())
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.add_event_listener(CallEvents.Failed, lambda ev: VoxEngine.terminate())
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
