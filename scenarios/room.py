# room-<name>: one conference room. Started by VoxEngine.call_conference("room-<name>")
# (see conf.py); each caller arrives as an incoming call. The room says who joined
# and ends when its last caller has left.

room = VoxEngine.custom_data() or "room"
conf = VoxEngine.create_conference(room)


def announce(text):
    player = VoxEngine.create_tts_player(text)
    player.add_event_listener(PlayerEvents.PlaybackFinished, lambda ev: player.stop())
    player.send_media_to(conf)


def on_alerting(e):
    call = e.call

    def connected(_):
        conf.add(call=call, direction="BOTH", display_name=call.callerid)
        announce(f"{call.callerid or 'a caller'} joined")

    def left(_):
        if not any(c.state == CallState.CONNECTED for c in calls):
            VoxEngine.terminate()

    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, left)
    call.answer()


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
