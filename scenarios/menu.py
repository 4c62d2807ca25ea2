# menu: a small IVR. Plays a prompt; 1 = hear yourself (echo), 2 = the greeting,
# # = hang up. Any digit interrupts what is playing.


def on_alerting(e):
    call = e.call
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.add_event_listener(CallEvents.Failed, lambda ev: VoxEngine.terminate())
    call.answer()


def connected(e):
    e.call.handle_tones(True)
    e.call.start_playback("menu.wav")


def tone(e):
    call = e.call
    Logger.write(f"menu: caller pressed {e.tone}")
    call.stop_playback()
    if e.tone == "1":
        call.send_media_to(call)
    elif e.tone == "2":
        call.start_playback("hello.wav")
    elif e.tone == "#":
        call.hangup()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
