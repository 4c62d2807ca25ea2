"""out-<target>: forward the call to any SIP URI, the target percent-encoded in the dialled
user part (``out-bob%40127.0.0.1%3A5090`` calls ``sip:bob@127.0.0.1:5090``); the two legs
are bridged with ``easy_process``: ringing, answer, audio and hang-up pass between them."""

from urllib.parse import unquote


def on_alerting(e):
    target = unquote(e.destination[len("out-"):])
    if not target.startswith("sip:"):
        target = "sip:" + target
    Logger.write(f"forwarding {e.call.id} to {target}")
    try:
        out = VoxEngine.call_sip(target, callerid=e.call.callerid, display_name=e.call.display_name)
    except ValueError as exc:
        Logger.write(f"cannot forward: {exc}")
        e.call.decline(404, "Not Found")
        return
    out.add_event_listener(CallEvents.Failed, lambda ev: Logger.write(f"{target} failed: {ev.code} {ev.reason}"))
    VoxEngine.easy_process(e.call, out)
    for call in (e.call, out):
        call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate()
                                if all(c.ended for c in (e.call, out)) else None)
        call.add_event_listener(CallEvents.Failed, lambda ev: VoxEngine.terminate()
                                if all(c.ended for c in (e.call, out)) else None)


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
