# echo: answers and sends the caller's own audio back; ends when the caller hangs up.


def on_alerting(e):
    call = e.call
    call.answer()
    call.send_media_to(call)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.add_event_listener(CallEvents.Failed, lambda ev: VoxEngine.terminate())


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
