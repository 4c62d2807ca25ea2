"""callback: started over the HTTP API, it calls someone and plays them the greeting.

    curl -X POST -H "Authorization: Bearer $(cat DATA_DIR/api.token)" \\
         -d '{"scenario": "callback", "custom_data": "sip:bob@127.0.0.1:5090"}' \\
         http://127.0.0.1:8088/api/sessions

custom_data is the SIP URI to call (or JSON: {"to": URI, "text": words to say instead of
the greeting}). While the session lives, its access URL answers GET with the call's state
as JSON, and POST with body "hangup" ends the call.
"""

import json


def on_started(e):
    data = VoxEngine.custom_data().strip()
    spec = json.loads(data) if data.startswith("{") else {"to": data}
    call = VoxEngine.call_sip(spec["to"], callerid="callback")
    Logger.write(f"calling {spec['to']}")

    def connected(ev):
        if spec.get("text"):
            call.say(spec["text"])
        else:
            call.start_playback("hello.wav")

    def status(ev):
        if ev.method == "POST" and ev.content.strip() == b"hangup":
            call.hangup()
        return {"call": call.id, "state": call.state, "to": spec["to"], "codec": call.codec}

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.PlaybackFinished, lambda ev: call.hangup())
    call.add_event_listener(CallEvents.Failed, lambda ev: (Logger.write(f"call failed: {ev.code} {ev.reason}"),
                                                           VoxEngine.terminate()))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    VoxEngine.add_event_listener(AppEvents.HttpRequest, status)


VoxEngine.add_event_listener(AppEvents.Started, on_started)
