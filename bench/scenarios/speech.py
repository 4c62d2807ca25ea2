# speech: recognises what the caller says (yes / no) and says it back, for as long as
# the call lasts: ASR and TTS load beside the echo calls of a benchmark.


def on_alerting(e):
    call = e.call

    def connected(_):
        asr = VoxEngine.create_asr(phrases=["yes", "no"])
        asr.add_event_listener(ASREvents.Result, lambda ev: heard(ev.text))
        call.send_media_to(asr)
        call.say("Say yes or no, as often as you like.")

    def heard(text):
        Logger.write(f"speech heard {text!r}")
        call.say(f"You said {text}." if text else "Pardon?")

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
