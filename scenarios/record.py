# record: says a prompt, records the caller until # or 10 s, plays the recording
# back and hangs up. Recordings are WAV files in the data directory's recordings/.

LIMIT = 10.0


def on_alerting(e):
    call = e.call
    state = {"step": "prompt", "recorder": None, "timer": None}

    def connected(_):
        call.handle_tones(True)
        call.say("Please leave a message after the tone, and press the hash key when you are done.")

    def playback_finished(_):
        if state["step"] == "prompt":
            state["step"] = "beep"
            beep = VoxEngine.create_tone_script_player("1000@-10;0.3(.3/0/1)")
            beep.add_event_listener(PlayerEvents.PlaybackFinished, lambda ev: start_recording())
            beep.send_media_to(call)
        elif state["step"] == "playback":
            call.hangup()

    def start_recording():
        state["step"] = "recording"
        recorder = state["recorder"] = call.record()
        recorder.add_event_listener(RecorderEvents.Stopped, recorded)
        state["timer"] = set_timeout(stop_recording, LIMIT * 1000)

    def stop_recording():
        timer, state["timer"] = state["timer"], None
        if timer is not None:
            clear_timeout(timer)
        if state["step"] == "recording":
            state["step"] = "stopping"
            state["recorder"].stop()

    def recorded(ev):
        Logger.write(f"record: {ev.duration:.1f} s in {ev.path}")
        if call.state == CallState.CONNECTED:
            state["step"] = "playback"
            call.start_playback(ev.path)

    def tone(ev):
        if ev.tone == "#":
            stop_recording()

    def ended(_):
        stop_recording()
        VoxEngine.terminate()

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.PlaybackFinished, playback_finished)
    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.Disconnected, ended)
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
