"""What the console shows of sessions and calls: JSON-ready dicts and their text renderings.

Everything here only reads engine objects (no side effects), so it is safe to
call from any op and from the ``show()`` / ``ladder()`` helpers.
"""

from __future__ import annotations

import time
from typing import Any


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def rtp_info(call: Any) -> dict[str, Any] | None:
    """The RTP counters of a call's media endpoint (kept after the call ends), or None before answer."""
    media = getattr(call, "media", None)
    if media is None:
        return None
    info: dict[str, Any] = dict(getattr(media, "stats", {}) or {})
    jitter = getattr(getattr(media, "jitter", None), "stats", None)
    if jitter is not None:
        for key in ("lost", "late", "duplicate", "underruns", "jitter_ms", "depth"):
            try:
                info[key] = jitter[key]
            except (KeyError, TypeError, IndexError):
                pass
    remote = getattr(media, "remote", None)
    if remote:
        info["remote"] = f"{remote[0]}:{remote[1]}"
    info["latched"] = bool(getattr(media, "latched", False))
    return info


def call_info(call: Any) -> dict[str, Any]:
    return {
        "id": call.id,
        "state": call.state,
        "codec": getattr(call, "codec", None),
        "duration": round(float(getattr(call, "duration", 0.0)), 3),
        "callerid": _safe(lambda: call.callerid),
        "destination": _safe(lambda: call.destination),
        "end_reason": getattr(call, "end_reason", None),
        "rtp": rtp_info(call),
        "media_worker": _safe(lambda: {"index": call.media.worker.index, "pid": call.media.worker.pid}),
        "levels": _safe(lambda: levels(call.media)),
    }


def levels(unit: Any) -> dict[str, float] | None:
    """A unit's audio levels (RMS dBFS, sampled every 100 ms): what it receives and what it gives."""
    if unit is None:
        return None
    return {"in": float(unit.level_in), "out": float(unit.level_out)}


def _levels_text(lv: dict[str, float] | None) -> str:
    if not lv:
        return ""
    return f"  level in={lv['in']:.0f} out={lv['out']:.0f} dBFS"


def _safe(fn, default: Any = None) -> Any:
    try:
        return fn()
    except Exception:
        return default


def session_units(session: Any) -> list[Any]:
    return list(getattr(session, "units", {}).values())


def session_routes(session: Any) -> list[tuple[Any, Any]]:
    """Routes of the media graph that touch one of the session's units, as (src, dst) units."""
    mine = {id(getattr(u, "media", u)) for u in session_units(session)}
    graph = session.engine.graph
    return [(src, dst) for src, dst in graph.routes() if id(src) in mine or id(dst) in mine]


def session_info(session: Any, detail: bool = True) -> dict[str, Any]:
    now = time.time()
    ended = getattr(session, "ended", None)
    info = {
        "id": session.id,
        "scenario": session.scenario_path.name,
        "path": str(session.scenario_path),
        "state": session.state,
        "created": session.created,
        "age": round((ended or now) - session.created, 3),
        "ended": ended,
        "end_reason": getattr(session, "end_reason", None),
        "calls": [call_info(c) for c in list(session.calls)],
    }
    if detail:
        info["units"] = [{"id": u.id, "kind": getattr(u, "kind", "unit"), "name": u.name,
                          "description": _safe(u.describe, u.name), "levels": _safe(lambda u=u: levels(u))}
                         for u in session_units(session)]
        info["routes"] = [[src.name, dst.name] for src, dst in session_routes(session)]
    return info


def summary_line(info: dict[str, Any]) -> str:
    """One line for a toolbar: 's3-ab12 echo.py running 0:00:12 | s3-ab12-c1 CONNECTED PCMU 0:00:11'."""
    calls = " | ".join(f"{c['id']} {c['state']} {c['codec'] or '-'} {_fmt_duration(c['duration'])}"
                       for c in info["calls"]) or "no calls"
    return f"{info['id']} {info['scenario']} {info['state']} {_fmt_duration(info['age'])} | {calls}"


def calls_table(infos: list[dict[str, Any]]) -> str:
    """The calls of some sessions as a table (``core show channels`` style)."""
    header = ("SESSION", "SCENARIO", "STATE", "AGE", "CALL", "CALL STATE", "CODEC", "DURATION",
              "FROM", "TO", "RTP RX/TX", "LOST")
    rows: list[tuple[str, ...]] = []
    for s in infos:
        calls = s["calls"] or [None]
        for i, c in enumerate(calls):
            head = (s["id"], s["scenario"], s["state"], _fmt_duration(s["age"])) if i == 0 else ("", "", "", "")
            if c is None:
                rows.append(head + ("-",) * 8)
                continue
            rtp = c.get("rtp") or {}
            rows.append(head + (
                c["id"], c["state"], c["codec"] or "-", _fmt_duration(c["duration"]),
                c.get("callerid") or "-", c.get("destination") or "-",
                f"{rtp.get('rx_packets', 0)}/{rtp.get('tx_packets', 0)}" if rtp else "-",
                str(rtp.get("lost", 0)) if rtp else "-"))
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header] + rows]
    return "\n".join(lines)


def _digits_text(count: int, recent: str) -> str:
    if count == 0:
        return "digits none"
    if count > len(recent):
        return f"digits {count} (last {len(recent)}: {recent})"
    return f"digits {count} ({recent})"


def format_show(session: Any, digits: dict[str, tuple[int, str]] | None = None) -> str:
    """The text of ``show()``: the session, its calls with RTP stats and the DTMF digits they
    received (``digits``: call id -> (count, most recent digits)), its media units and routes."""
    info = session_info(session)
    lines = [f"session {info['id']}  {info['scenario']}  {info['state']}"
             + (f" ({info['end_reason']})" if info["end_reason"] else "")
             + f"  up {_fmt_duration(info['age'])}"]
    if info["calls"]:
        lines.append("calls:")
        for c in info["calls"]:
            rtp = c["rtp"]
            text = (f"  {c['id']}  {c['state']:<12} {c['codec'] or '-':<5} {_fmt_duration(c['duration'])}"
                    f"  {c['callerid'] or '?'} -> {c['destination'] or '?'}")
            if rtp:
                text += (f"  rtp rx={rtp.get('rx_packets', 0)} tx={rtp.get('tx_packets', 0)}"
                         f" lost={rtp.get('lost', 0)} late={rtp.get('late', 0)}"
                         f" jitter={float(rtp.get('jitter_ms', 0.0)):.1f}ms"
                         f" remote={rtp.get('remote', '?')}")
            if not c["end_reason"]:
                text += _levels_text(c.get("levels"))
            if c.get("media_worker") and not c["end_reason"]:
                text += f"  @media-{c['media_worker']['index']}"
            if digits is not None:
                # Digits, not rx_dtmf: that counts RTP event packets (several per digit).
                text += "  " + _digits_text(*digits.get(c["id"], (0, "")))
            if c["end_reason"]:
                text += f"  ended: {c['end_reason']}"
            lines.append(text)
    else:
        lines.append("calls: none")
    others = [u for u in info["units"] if u["kind"] != "rtp"]
    if others:
        lines.append("units:")
        lines.extend(f"  {u['id']}  {u['kind']}  {u['description']}{_levels_text(u.get('levels'))}"
                     for u in others)
    lines.append("media routes:" if info["routes"] else "media routes: none")
    lines.extend(f"  {src} -> {dst}" for src, dst in info["routes"])
    return "\n".join(lines)


def format_ladder(call: Any, width: int = 52) -> str:
    """A call's SIP message flow (``call.leg.ladder``) as a text ladder: the peer left, voxlab right."""
    entries = list(getattr(getattr(call, "leg", None), "ladder", []) or [])
    peer = entries[0].target if entries else "peer"
    head = f"SIP ladder of {call.id} ({_safe(lambda: call.callerid) or '?'} -> {_safe(lambda: call.destination) or '?'})"
    if not entries:
        return head + "\n  (no SIP messages recorded)"
    t0 = entries[0].at
    left = f"{peer}"
    lines = [head, f"{'':>10}  {left:<{width + 2}}voxlab"]
    for e in entries:
        label = f" {e.summary} "
        if len(label) > width - 4:
            label = label[:width - 7] + "... "
        if e.direction == "in":
            body = "|" + ("--" + label).ljust(width - 1, "-") + ">|"
        else:
            body = "|<" + (label + "--").rjust(width - 1, "-") + "|"
        extra = f"  ({e.target})" if e.target != peer else ""
        lines.append(f"{'+%.3f' % (e.at - t0):>10}  {body}{extra}")
    return "\n".join(lines)
