"""out-<target>: forward the call to any SIP URI, the target percent-encoded in the dialled
user part (``out-bob%40127.0.0.1%3A5090`` calls ``sip:bob@127.0.0.1:5090``); the two legs
are bridged with ``easy_process``: ringing, early media, answer, audio and hang-up pass
between them, a REFER from either side transfers the other one, and the session ends with
the bridge."""

from urllib.parse import unquote


def on_alerting(e):
    target = unquote(e.destination[len("out-"):])
    if not target.startswith("sip:"):
        target = "sip:" + target
    Logger.write(f"forwarding {e.call.id} to {target}")
    try:
        out = VoxEngine.forward_call_to_sip(e, target)
    except ValueError as exc:
        Logger.write(f"cannot forward: {exc}")
        e.call.decline(404, "Not Found")
        return
    out.add_event_listener(CallEvents.Failed, lambda ev: Logger.write(f"{target} failed: {ev.code} {ev.reason}"))


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
