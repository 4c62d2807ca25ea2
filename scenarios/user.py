"""A registered user's name (when no other rule matches it): ring every phone the user has
registered (``forward_call_to_user``) and bridge the first to answer with the caller; the
session ends with the bridge."""


def on_alerting(e):
    try:
        VoxEngine.forward_call_to_user(e)
    except LookupError:
        Logger.write(f"{e.destination} has no registered phone")
        e.call.decline(480, "Temporarily Unavailable")
        return
    Logger.write(f"ringing {e.destination}'s phones for {e.call.id}")


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
