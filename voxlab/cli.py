"""The ``voxlab`` command: ``voxlab --version`` and the console clients.

    voxlab attach [SESSION|CALL|--last]     REPL into a live session (Ctrl-D detaches);
                                            with piped input: run it once in the session
    voxlab sessions [--ended] [--json]      live sessions and their calls (like 'core show channels')
    voxlab routes [--json]                  the routing table in force, and broken scenario files
    voxlab hangup CALL|SESSION              hang up a call (or every call of a session)
    voxlab logs SESSION [-f] [-n N] [--feed] a session's Logger.write lines (-f: follow until it
                                            ends; --feed: its whole feed, SIP, media, DTMF, events...)
    voxlab phone [--dial DEST] [--user U --password P] ...  a softphone (see docs/phone.md)

Where the console is: ``--data-dir DIR`` (its ``console.sock``; default
$XDG_DATA_HOME/voxlab), ``--socket PATH``, or ``--tcp HOST:PORT --token T``
(or $VOXLAB_CONSOLE_TOKEN, or the server's config token with ``--config``, or
the token file ``DATA_DIR/console.token`` the server writes, with
``--data-dir``/``--config``); ``--config FILE`` takes the data dir (and, with
--tcp, the token) from the server's TOML file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from voxlab import __version__


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the console is")
    group.add_argument("-d", "--data-dir", help="the server's data dir (default: $XDG_DATA_HOME/voxlab)")
    group.add_argument("--socket", help="the console's Unix socket (default: DATA_DIR/console.sock)")
    group.add_argument("--tcp", metavar="HOST:PORT", help="connect over TCP instead (needs the token)")
    group.add_argument("--token", help="the console token for --tcp (default: $VOXLAB_CONSOLE_TOKEN, "
                                       "else DATA_DIR/console.token when --data-dir or --config is given)")
    group.add_argument("-c", "--config", help="the server's TOML config (its data_dir; with --tcp, its console token)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxlab", description="voxlab telephony lab tools",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Run the server itself with: twistd -n voxlab --help")
    parser.add_argument("--version", action="version", version=f"voxlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("attach", help="attach a REPL to a live session (Ctrl-D detaches)",
                       description="Attach a Python REPL to a live session: the scenario's namespace, "
                                   "plus call, show(), ladder(), reload(). Ctrl-D detaches and leaves "
                                   "the session running.")
    p.add_argument("target", nargs="?", metavar="SESSION|CALL",
                   help="a session id (or its unique 'sN' prefix) or a call id; default: --last")
    p.add_argument("--last", action="store_true",
                   help="the most recent live session with a call still up, else the most recent "
                        "live session (the default)")
    p.add_argument("--next", action="store_true",
                   help="wait for the next session to start and attach to it (attach, then call)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when no session is live, wait up to SECONDS for one to start")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours in the feed and results")
    p.add_argument("--wait-deferred", type=float, default=60.0, metavar="SECONDS",
                   help="with piped input whose result is a Deferred: wait up to SECONDS for it to fire "
                        "(default 60; 0 waits without a limit); exit status 1 if it has not by then")
    _add_endpoint_options(p)

    p = sub.add_parser("sessions", help="list live sessions and their calls",
                       description="Live sessions with their calls (state, codec, duration, RTP).")
    p.add_argument("--ended", action="store_true", help="also list recently ended sessions")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    _add_endpoint_options(p)

    p = sub.add_parser("routes", help="the routing table in force and the scenario files that do not compile",
                       description="Which dialled user part runs which scenario (first match wins), as "
                                   "the server has it now: it re-reads the scenarios folder and "
                                   "routes.toml within a second of a change. Broken files are listed "
                                   "with their error (calls to them get 500).")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    _add_endpoint_options(p)

    p = sub.add_parser("hangup", help="hang up a call (or all calls of a session)")
    p.add_argument("target", metavar="CALL|SESSION")
    _add_endpoint_options(p)

    p = sub.add_parser("logs", help="print a session's Logger.write lines (-f follows them until the session ends)",
                       description="Print a session's log: the lines its code wrote with Logger.write "
                                   "(only those; --feed prints its whole feed instead: SIP, media routes, "
                                   "DTMF, events, log lines, errors, session and console entries).")
    p.add_argument("target", metavar="SESSION|CALL")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the session ends")
    p.add_argument("-n", "--lines", type=int, default=None, help="only the last N lines")
    p.add_argument("--feed", action="store_true",
                   help="the session's whole feed (every kind, as `voxlab attach` shows it: "
                        "'HH:MM:SS kind text'), not only its Logger.write lines")
    _add_endpoint_options(p)

    p = sub.add_parser("users", help="the registrar's users: add, list, remove",
                       description="Users of the registrar (SIP REGISTER, challenged calls). Users "
                                   "added here are kept in DATA_DIR/directory.sqlite; users of the "
                                   "config file's [users] table are listed too but changed only there. "
                                   "A running server sees changes at once.")
    users = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    u = users.add_parser("add", help="add a user, or change a user's password")
    u.add_argument("name")
    u.add_argument("--password", help="the password (default: asked for, or read from stdin)")
    u = users.add_parser("list", help="users and their registered contacts")
    u.add_argument("--json", action="store_true")
    u = users.add_parser("remove", help="remove a user and their bindings")
    u.add_argument("name")
    for u in users.choices.values():
        u.add_argument("-d", "--data-dir", help="the server's data dir (default: $XDG_DATA_HOME/voxlab)")
        u.add_argument("-c", "--config", help="the server's TOML config (its data_dir and [users])")

    p = sub.add_parser("history", help="past (and running) sessions and their calls, newest first",
                       description="The call history the server keeps in DATA_DIR/history.sqlite "
                                   "(also while it runs, and after it has stopped).")
    p.add_argument("--since", help="sessions started at or after: epoch seconds, an ISO 8601 time, "
                                   "or an age like 30m, 2h, 7d")
    p.add_argument("--until", help="sessions started before (same forms)")
    p.add_argument("--scenario", help="only this scenario file (echo.py or echo)")
    p.add_argument("--reason", help="only this finish reason: normal, error, timeout, limit, shutdown, api")
    p.add_argument("--custom-data", help="only sessions whose custom data contains this text")
    p.add_argument("-n", "--limit", type=int, default=50, help="at most this many sessions (default 50)")
    p.add_argument("--json", action="store_true", help="JSON, with each session's calls")
    p.add_argument("-d", "--data-dir", help="the server's data dir (default: $XDG_DATA_HOME/voxlab)")
    p.add_argument("-c", "--config", help="the server's TOML config (its data_dir)")

    _add_phone_parser(sub)
    return parser


def _add_phone_parser(sub) -> None:
    p = sub.add_parser("phone", help="a terminal softphone: call scenarios, take their calls",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="A SIP softphone on voxlab's own SIP/RTP code, with the sound card "
                                   "(PyAudio, the 'phone' extra) or WAV files as microphone and "
                                   "speaker. On a terminal: a screen with keys (Enter dial, a answer, "
                                   "r reject, h hang up, 0-9*# DTMF, m mute, o hold, Ctrl-C quit); "
                                   "without one, or with --dial and --audio-in: state lines on stdout.",
                       epilog="examples:\n"
                              "  voxlab phone --dial echo                      talk to the echo scenario\n"
                              "  voxlab phone --user alice --password pw       register; take calls to alice\n"
                              "  voxlab phone --dial echo --audio-in tone.wav --audio-out heard.wav\n"
                              "                                                headless: hang up when tone.wav ends")
    p.add_argument("--server", default="127.0.0.1:5060", metavar="HOST:PORT",
                   help="the SIP server (registrar, and where plain names are dialled; default %(default)s)")
    p.add_argument("--user", metavar="NAME", help="register as this user (with --password)")
    p.add_argument("--password", metavar="P", help="the user's password (REGISTER and challenged calls)")
    p.add_argument("--dial", metavar="DEST",
                   help="call at once: a name (echo: sip:echo@SERVER) or a SIP URI (sip:bob@host:port)")
    p.add_argument("--audio-in", metavar="FILE", help="a WAV file as the microphone (any rate; with "
                                                     "--dial, the call hangs up when it ends)")
    p.add_argument("--audio-out", metavar="FILE", help="write what is heard to this WAV file (8 kHz)")
    p.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    p.add_argument("--device", metavar="N[,M]", help="the audio device number (or IN,OUT numbers) "
                                                   "from --list-devices (default: the system's default)")
    p.add_argument("--auto-answer", action="store_true", help="answer incoming calls at once")
    p.add_argument("--local", metavar="HOST:PORT",
                   help="the phone's own SIP address (default: the address towards the server, any port)")
    p.add_argument("--codec", default="PCMU", type=str.upper, choices=["PCMU", "PCMA"],
                   help="the preferred codec (default %(default)s; the other one is offered too)")
    p.add_argument("--expires", type=int, default=600, metavar="SECONDS",
                   help="registration lifetime asked for (default %(default)s; refreshed before it ends)")
    p.add_argument("--headless", action="store_true",
                   help="no screen: print state lines even on a terminal")


def _when(text: str | None, now: float) -> float | None:
    """--since/--until: epoch seconds, ISO 8601, or an age (30s, 30m, 2h, 7d) before now."""
    if text is None:
        return None
    ages = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in ages and text[:-1].replace(".", "", 1).isdigit():
        return now - float(text[:-1]) * ages[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"not a time: {text!r} (epoch seconds, 2026-12-03T10:00, or 30m / 2h / 7d)") from None


class UsageError(Exception):
    """The command line cannot work as given (the message says how to fix it)."""


def _token_file(data_dir: str | os.PathLike | None) -> str | None:
    """The token the server wrote to DATA_DIR/console.token (when it listens on TCP), if readable."""
    if data_dir is None:
        return None
    try:
        token = (Path(data_dir) / "console.token").read_text().strip()
    except OSError:
        return None
    return token or None


def _endpoint(args: argparse.Namespace):
    from voxlab.console.client import endpoint_from_args
    data_dir = args.data_dir
    tcp = args.tcp
    token = args.token
    if args.config:
        from voxlab.config import Config
        config = Config()
        config.apply_toml(Path(args.config))
        data_dir = data_dir or config.data_dir
        if tcp and token is None and config.console_token:
            token = config.console_token
    endpoint = endpoint_from_args(data_dir=data_dir, socket_path=args.socket, tcp=tcp, token=token)
    if tcp and not endpoint.token:
        endpoint.token = _token_file(data_dir)
        if not endpoint.token:
            # Every TCP connection must authenticate: without a token it could only be refused.
            raise UsageError(
                f"--tcp {tcp} needs the console token: pass --token TOKEN or set $VOXLAB_CONSOLE_TOKEN "
                "(the server prints it at start and writes it to DATA_DIR/console.token; on the "
                "server's machine, --data-dir DIR or -c voxlab.toml reads that file)")
    return endpoint, data_dir


def _history_path(data_dir) -> Path | None:
    from voxlab.config import default_data_dir
    for base in (data_dir, default_data_dir()):
        if base is None:
            continue
        base = Path(base)
        if base.is_dir() and os.access(base, os.W_OK):
            return base / "console_history"
    return None


def _connect(args: argparse.Namespace):
    from voxlab.console.client import ConsoleClient
    endpoint, _ = _endpoint(args)
    return ConsoleClient.connect(endpoint)


def cmd_sessions(args: argparse.Namespace) -> int:
    from voxlab.console.views import calls_table
    with _connect(args) as client:
        reply = client.request("sessions", detail=False, ended_limit=20 if args.ended else 0)
    if args.json:
        print(json.dumps({"sessions": reply["sessions"], "ended": reply["ended"]}, indent=2))
        return 0
    live = reply["sessions"]
    if live:
        print(calls_table(live))
    ncalls = sum(len(s["calls"]) for s in live)
    active = sum(1 for s in live for c in s["calls"] if c["state"] in ("CONNECTED", "CONNECTING", "ALERTING"))
    print(f"{len(live)} live session(s), {ncalls} call(s), {active} active")
    _print_scenario_errors(reply.get("scenario_errors") or {})
    if args.ended:
        print()
        if reply["ended"]:
            print("recently ended:")
            print(calls_table(reply["ended"]))
        else:
            print("no recently ended sessions")
    return 0


def _print_scenario_errors(errors: dict[str, str]) -> None:
    for path, error in errors.items():
        print(f"broken scenario {path}: {error}")


def cmd_routes(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        reply = client.request("routes")
    if args.json:
        print(json.dumps({k: reply[k] for k in ("scenarios_dir", "rules", "errors", "routes_error")}, indent=2))
        return 0
    print(f"scenarios folder: {reply['scenarios_dir']}")
    width = max((len(r["pattern"]) for r in reply["rules"]), default=0)
    for rule in reply["rules"]:
        origin = "" if rule["origin"] == "file" else f"  ({rule['origin']})"
        broken = "  BROKEN" if rule.get("error") else ""
        print(f"  {rule['pattern']:<{width}}  -> {Path(rule['scenario']).name}{origin}{broken}")
    if not reply["rules"]:
        print("  (no rules: every call gets 404)")
    if reply.get("routes_error"):
        print(f"routes.toml not applied (the previous rules stay): {reply['routes_error']}")
    _print_scenario_errors(reply["errors"])
    return 0


def cmd_hangup(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        reply = client.request("hangup", call=args.target)
    print(f"hangup requested: {', '.join(reply['calls'])}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        reply = client.request("logs", session=args.target, follow=args.follow,
                               **({"lines": args.lines} if args.lines is not None else {}),
                               **({"feed": True} if args.feed else {}))
        for line in reply["lines"]:
            print(line, flush=True)
        if not reply["lines"]:
            # say so (on stderr: stdout stays the log itself), or an empty log looks like a hang or a bug
            what = "feed entries" if args.feed else "log lines"
            print(f"(no {what}{' yet' if reply.get('following') else ''} in session {reply['session']})",
                  file=sys.stderr, flush=True)
        if not args.follow:
            return 0
        if not reply.get("following"):
            print(f"(session {reply['session']} has ended)", file=sys.stderr)
            return 0
        client.sock.settimeout(None)
        while True:
            try:
                event = client.next_event(timeout=3600 * 24 * 365,
                                          match=lambda e: e.get("event") in ("log", "log_end"))
            except TimeoutError:
                continue
            if event["event"] == "log_end":
                print(f"(session {event['session']} ended: {event.get('reason')})", file=sys.stderr)
                return 0
            for line in event.get("lines", []):
                print(line, flush=True)


def _wait_deferred(client, n: int, wait: float) -> dict | None:
    """The ``deferred`` event of Deferred #n (printing the ``output`` events before it), or None
    when it has not fired within ``wait`` seconds (0 or less: no limit)."""
    deadline = None if wait <= 0 else time.monotonic() + wait
    while True:
        left = 3600.0 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            # what the cell prints after its awaits comes as `output` events, before `deferred`
            event = client.next_event(timeout=left, match=lambda e: e.get("event") in ("output", "deferred")
                                      and e.get("n") == n)
        except TimeoutError:
            continue            # the loop ends it at the deadline (never, without one)
        if event["event"] == "deferred":
            return event
        sys.stdout.write(event.get("text", ""))
        sys.stdout.flush()


def _script_exit(exit: dict) -> int:
    """The script called exit()/sys.exit(): its run ends there, with that exit status."""
    status = exit.get("status")
    status = status if isinstance(status, int) else 1
    sys.stdout.flush()
    if exit.get("message"):
        print(exit["message"], file=sys.stderr)
    print(f"voxlab attach: the script called exit({exit.get('code', '')}): its run ends there, exit status "
          f"{status} (the rest of the input did not run; the session keeps running)", file=sys.stderr)
    return status


def run_script(args: argparse.Namespace, source: str) -> int:
    """``voxlab attach`` with its input not a terminal: evaluate all of it once, print, exit.
    E.g. ``echo 'call.hangup()' | voxlab attach s3``. Exit status 1 if it raised (or its
    Deferred did not fire within --wait-deferred); ``exit(n)`` in it ends it with status n."""
    from voxlab.console.client import ConsoleClient
    endpoint, _ = _endpoint(args)
    with ConsoleClient.connect(endpoint, timeout=max(30.0, args.wait + 10)) as client:
        client.request("attach", target=None if args.last else args.target, next=args.next,
                       wait=args.wait, timeout=args.wait + 30 if (args.wait or args.next) else None)
        reply = client.request("eval", source=source)
        if reply.get("output"):
            sys.stdout.write(reply["output"])
        if reply.get("result") is not None:
            print(reply["result"])
        if reply.get("exit"):
            return _script_exit(reply["exit"])
        if reply.get("deferred"):
            n = reply["deferred"]
            event = _wait_deferred(client, n, args.wait_deferred)
            if event is None:
                sys.stdout.flush()
                print(f"Deferred #{n} still pending after {args.wait_deferred:g} s; it goes on in the "
                      "session, but its result will not be shown here (--wait-deferred SECONDS waits "
                      "longer, 0 without a limit)", file=sys.stderr)
                return 1
            if event.get("exit"):
                return _script_exit(event["exit"])
            if event.get("error"):
                print(event["error"].rstrip(), file=sys.stderr)
                return 1
            print(f"Deferred #{event['n']} fired: {event['result']}")
        if reply.get("error"):
            print(reply["error"].rstrip(), file=sys.stderr)
            return 1
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty():
        return run_script(args, sys.stdin.read())
    from voxlab.console.attach import run
    endpoint, data_dir = _endpoint(args)
    target = None if args.last else args.target
    return run(endpoint, target, _history_path(data_dir), color=False if args.no_color else None,
               wait=args.wait, next_session=args.next)


def cmd_users(args: argparse.Namespace) -> int:
    import getpass
    import json

    from voxlab.config import Config
    from voxlab.sip.location import Directory
    config = Config()
    if args.config:
        config.apply_toml(Path(args.config))
    if args.data_dir:
        config.data_dir = Path(args.data_dir)
    directory = Directory(config.directory_path, config.users)
    try:
        if args.users_command == "add":
            password = args.password
            if password is None:
                password = (getpass.getpass(f"password for {args.name}: ") if sys.stdin.isatty()
                            else sys.stdin.readline().rstrip("\n"))
            if args.name in config.users:
                raise UsageError(f"user {args.name!r} is defined in the config file; change it there")
            try:
                directory.add_user(args.name, password)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            print(f"user {args.name} saved in {config.directory_path}")
        elif args.users_command == "remove":
            try:
                removed = directory.remove_user(args.name)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if not removed:
                raise UsageError(f"no user {args.name!r} in {config.directory_path}")
            print(f"user {args.name} removed")
        else:
            import time as _time
            now = _time.time()
            rows = [{"user": name, "from": where,
                     "bindings": [{"contact": b.contact, "expires": b.expires_in(now),
                                   "source": f"{b.transport}:{b.host}:{b.port}"}
                                  for b in directory.bindings(name)]}
                    for name, where in directory.users()]
            if args.json:
                print(json.dumps({"users": rows}, indent=2))
            elif not rows:
                print("no users (add one with: voxlab users add NAME)")
            for row in ([] if args.json else rows):
                print(f"{row['user']}  ({row['from']})  {len(row['bindings'])} contact(s)")
                for b in row["bindings"]:
                    print(f"    {b['contact']}  expires in {b['expires']} s  via {b['source']}")
    finally:
        directory.close()
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    import json
    import time as _time

    from voxlab.config import Config
    from voxlab.store.history import FINISH_REASONS, query_sessions
    config = Config()
    if args.config:
        config.apply_toml(Path(args.config))
    if args.data_dir:
        config.data_dir = Path(args.data_dir)
    if args.reason is not None and args.reason not in FINISH_REASONS:
        raise UsageError(f"--reason is one of {', '.join(sorted(FINISH_REASONS))}")
    now = _time.time()
    scenario = args.scenario
    if scenario is not None and not scenario.endswith(".py"):
        scenario += ".py"
    path = config.data_dir / "history.sqlite"
    rows = query_sessions(path, since=_when(args.since, now), until=_when(args.until, now),
                          scenario=scenario, reason=args.reason, custom_data=args.custom_data,
                          limit=max(1, args.limit), with_calls=args.json)
    if args.json:
        print(json.dumps({"sessions": rows}, indent=2))
        return 0
    if not rows:
        print(f"no sessions in {path}" + (" matching those filters" if any(
            (args.since, args.until, args.scenario, args.reason, args.custom_data)) else ""))
        return 0
    header = ("SESSION", "STARTED", "DURATION", "SCENARIO", "RULE", "REASON", "CALLS", "CUSTOM DATA")
    table = [header]
    for r in rows:
        duration = f"{(r['ended'] or now) - r['started']:.1f}s" + ("" if r["ended"] else " (running)")
        table.append((r["id"], _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(r["started"])),
                      duration, r["scenario"], r["rule"], r["finish_reason"] or "-", str(r["calls"]),
                      (r["custom_data"] or "")[:40]))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_phone(args: argparse.Namespace) -> int:
    from voxlab.phone.app import run

    return run(args)


COMMANDS = {"phone": cmd_phone, "history": cmd_history, "attach": cmd_attach, "sessions": cmd_sessions, "routes": cmd_routes, "hangup": cmd_hangup,
            "logs": cmd_logs, "users": cmd_users}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from voxlab.console.client import ConsoleClientError
    try:
        return COMMANDS[args.command](args)
    except (ConsoleClientError, UsageError) as exc:
        print(f"voxlab {args.command}: {exc}", file=sys.stderr)
        return 2
    except (TimeoutError, ValueError) as exc:
        print(f"voxlab {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
