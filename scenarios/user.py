"""A registered user's name (when no other rule matches it): ring every phone the user has
registered (``call_user``) and bridge the first to answer with the caller."""


def on_alerting(e):
    user = e.destination
    try:
        out = VoxEngine.call_user(user, callerid=e.call.callerid, display_name=e.call.display_name)
    except LookupError:
        Logger.write(f"{user} has no registered phone")
        e.call.decline(480, "Temporarily Unavailable")
        return
    Logger.write(f"ringing {user}'s phones for {e.call.id}")
    VoxEngine.easy_process(e.call, out)

    def maybe_end(ev):
        if e.call.ended and out.ended:
            VoxEngine.terminate()
    for call in (e.call, out):
        call.add_event_listener(CallEvents.Disconnected, maybe_end)
        call.add_event_listener(CallEvents.Failed, maybe_end)


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
