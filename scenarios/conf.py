# conf-<room>: joins conference <room>. Any number of callers, each in a session
# of its own: each call goes on into the session that owns the room (room.py,
# started on the first join) with VoxEngine.call_conference.


def on_alerting(e):
    call = e.call
    room = e.destination.removeprefix("conf-")

    def connected(_):
        into = VoxEngine.call_conference(f"room-{room}")
        VoxEngine.send_media_between(call, into)
        # The room ended (or refused us): so does this call.
        into.add_event_listener(CallEvents.Disconnected, lambda ev: call.hangup())
        into.add_event_listener(CallEvents.Failed, lambda ev: call.hangup())

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.add_event_listener(CallEvents.Failed, lambda ev: VoxEngine.terminate())
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
