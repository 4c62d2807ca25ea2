# ivr: a spoken menu. 1: talk to yourself (echo); 2: a tone script (US ringback);
# 3: a yes/no question, and what the speech recogniser heard is said back.
# Any digit interrupts the prompt; * repeats the menu, # hangs up.

MENU = ("Press one to hear yourself. Press two for a tone. "
        "Press three to answer a question. Press hash to hang up.")


def on_alerting(e):
    call = e.call
    state = {"asr": None, "tone": None}

    def menu():
        stop_units()
        call.stop_media_to(call)
        call.say(MENU)

    def stop_units():
        for key in ("asr", "tone"):
            unit, state[key] = state[key], None
            if unit is not None:
                unit.stop()

    def connected(_):
        call.handle_tones(True)
        menu()

    def tone(ev):
        call.stop_playback()
        if ev.tone == "1":
            stop_units()
            call.send_media_to(call)
        elif ev.tone == "2":
            stop_units()
            player = state["tone"] = VoxEngine.create_tone_script_player("440@-19,480@-19;10(2/4/1+2)",
                                                                         loop=True)
            player.send_media_to(call)
        elif ev.tone == "3":
            ask()
        elif ev.tone == "#":
            call.hangup()
        else:
            menu()

    def ask():
        stop_units()
        asr = state["asr"] = VoxEngine.create_asr(phrases=["yes", "no"], single_utterance=True)
        asr.add_event_listener(ASREvents.Result, heard)
        call.say("Do you like this demo? Say yes or no.")
        call.send_media_to(asr)

    def heard(ev):
        Logger.write(f"ivr: heard {ev.text!r} ({ev.confidence:.2f})")
        call.say(f"You said {ev.text}." if ev.text else "Sorry, I did not catch that.")

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.ToneReceived, tone)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
