"""The management API (``/api/...``): start, list, show and terminate sessions, call
history and session logs, recordings, users of the registrar. JSON in and out; every
route but ``/api/openapi.json`` needs the bearer token (see docs/http-api.md)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from twisted.web import server, static

from voxlab.console.views import session_info
from voxlab.http.jsonapi import ApiError, JsonRouter, json_body, query
from voxlab.store.history import FINISH_REASONS

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
_RECORDING_NAME = re.compile(r"^[\w.-]+\.wav$")


class Api:
    """The API's handlers, bound to one engine (and the registrar's directory)."""

    def __init__(self, engine: Any, directory: Any = None, data_dir: Path | None = None) -> None:
        self.engine = engine
        self.directory = directory
        self.data_dir = Path(data_dir) if data_dir is not None else None

    def install(self, router: JsonRouter) -> None:
        r = router.route
        r("GET", "/api/openapi.json", self.openapi, open=True)
        r("GET", "/api/sessions", self.list_sessions)
        r("POST", "/api/sessions", self.start_session)
        r("GET", "/api/sessions/{session_id}", self.show_session)
        r("DELETE", "/api/sessions/{session_id}", self.terminate_session)
        r("GET", "/api/sessions/{session_id}/log", self.session_log)
        r("GET", "/api/history", self.history)
        r("GET", "/api/recordings", self.list_recordings)
        r("GET", "/api/recordings/{name}", self.get_recording)
        r("GET", "/api/users", self.list_users)
        r("PUT", "/api/users/{name}", self.put_user)
        r("DELETE", "/api/users/{name}", self.delete_user)

    # -- sessions
    def openapi(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return OPENAPI_PATH.read_bytes()

    def list_sessions(self, request: server.Request) -> dict:
        return {"sessions": [self._live(s, detail=False) for s in self.engine.sessions.values()]}

    def start_session(self, request: server.Request) -> tuple[int, dict]:
        body = json_body(request)
        rule, scenario = body.get("rule"), body.get("scenario")
        custom = body.get("custom_data", "")
        if not isinstance(custom, str):
            custom = json.dumps(custom)
        for name, value in (("rule", rule), ("scenario", scenario)):
            if value is not None and not isinstance(value, str):
                raise ApiError(400, f"'{name}' must be a string")
        try:
            session = self.engine.start_session(rule=rule, scenario=scenario, custom_data=custom)
        except LookupError as exc:
            raise ApiError(404, str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except RuntimeError as exc:
            raise ApiError(503, str(exc)) from None
        return 201, {"session_id": session.id, "access_url": session.access_url,
                     "log_url": session.log_url, "state": session.state}

    def show_session(self, request: server.Request, session_id: str) -> Any:
        session = self.engine.sessions.get(session_id)
        if session is not None:
            return self._live(session, detail=True)
        return self._from_history(lambda h: h.session(session_id), session_id)

    def terminate_session(self, request: server.Request, session_id: str) -> dict:
        session = self.engine.sessions.get(session_id)
        if session is None:
            raise ApiError(404, f"no live session {session_id}")
        session.terminate("api")
        return {"session_id": session.id, "state": session.state, "finish_reason": session.end_reason}

    def session_log(self, request: server.Request, session_id: str) -> Any:
        session = self.engine.sessions.get(session_id)
        if session is not None:
            return {"session_id": session_id, "lines": list(session.log_lines)}
        history = self._history()
        d = history.session_log(session_id)

        def lines(rows: list[dict]) -> Any:
            out = {"session_id": session_id,
                   "lines": [f"{time.strftime('%H:%M:%S', time.localtime(r['at']))} {line}"
                             for r in rows for line in (r["text"].splitlines() or [""])]}
            if rows:
                return out

            def known(row: dict | None) -> dict:
                if row is None:
                    raise ApiError(404, f"no session {session_id} (live or in the history)")
                return out          # it ended without writing a line
            return history.session(session_id).addCallback(known)
        return d.addCallback(lines)

    def history(self, request: server.Request) -> Any:
        filters: dict[str, Any] = {}
        for name in ("since", "until"):
            value = query(request, name)
            if value is not None:
                filters[name] = _time_arg(name, value)
        for name in ("scenario", "reason", "custom_data"):
            value = query(request, name)
            if value is not None:
                filters[name] = value
        if "scenario" in filters and not filters["scenario"].endswith(".py"):
            filters["scenario"] += ".py"
        if "reason" in filters and filters["reason"] not in FINISH_REASONS:
            raise ApiError(400, f"'reason' is one of {', '.join(sorted(FINISH_REASONS))}")
        for name, default, top in (("limit", 100, 1000), ("offset", 0, 10**9)):
            value = query(request, name)
            try:
                number = int(value) if value is not None else default
            except ValueError:
                raise ApiError(400, f"'{name}' must be a whole number, not {value!r}") from None
            if not 0 <= number <= top:
                raise ApiError(400, f"'{name}' must be 0-{top}")
            filters[name] = number
        return self._history().sessions(**filters).addCallback(lambda rows: {"sessions": rows})

    def _live(self, session: Any, detail: bool) -> dict:
        info = session_info(session, detail=detail)
        info.update(rule=session.rule, custom_data=session.custom_data,
                    access_url=session.access_url, log_url=session.log_url, live=True)
        return info

    def _history(self) -> Any:
        history = self.engine.history
        if history is None:
            raise ApiError(503, "this server keeps no history")
        return history

    def _from_history(self, fetch, session_id: str) -> Any:
        def found(row: dict | None) -> dict:
            if row is None:
                raise ApiError(404, f"no session {session_id} (live or in the history)")
            row["live"] = False
            return row
        return fetch(self._history()).addCallback(found)

    # -- recordings
    def _recordings_dir(self) -> Path:
        if self.data_dir is None:
            raise ApiError(503, "this server has no data directory")
        return self.data_dir / "recordings"

    def list_recordings(self, request: server.Request) -> dict:
        folder = self._recordings_dir()
        files = sorted(folder.glob("*.wav"), key=lambda p: p.stat().st_mtime, reverse=True) \
            if folder.is_dir() else []
        return {"recordings": [{"name": p.name, "size": p.stat().st_size,
                                "modified": p.stat().st_mtime,
                                "url": f"/api/recordings/{p.name}"} for p in files]}

    def get_recording(self, request: server.Request, name: str) -> Any:
        if not _RECORDING_NAME.match(name):
            raise ApiError(400, f"not a recording name: {name!r}")
        path = self._recordings_dir() / name
        if not path.is_file():
            raise ApiError(404, f"no recording {name}")
        # twisted.web's File serves Range requests (206, multipart ranges, 416).
        return static.File(str(path), defaultType="audio/wav").render(request)

    # -- users
    def _directory(self) -> Any:
        if self.directory is None:
            raise ApiError(503, "the registrar is not running")
        return self.directory

    def list_users(self, request: server.Request) -> dict:
        directory = self._directory()
        return {"users": [{"name": name, "source": source,
                           "bindings": [b.contact for b in directory.bindings(name)]}
                          for name, source in directory.users()]}

    def put_user(self, request: server.Request, name: str) -> tuple[int, dict]:
        body = json_body(request)
        password = body.get("password")
        if not isinstance(password, str) or not password:
            raise ApiError(400, "'password' (a non-empty string) is needed")
        directory = self._directory()
        if dict(directory.users()).get(name) == "config":
            raise ApiError(400, f"user {name!r} is defined in the config file; change it there")
        existed = directory.password(name) is not None
        try:
            directory.add_user(name, password)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return (200 if existed else 201), {"name": name, "created": not existed}

    def delete_user(self, request: server.Request, name: str) -> dict:
        directory = self._directory()
        try:
            removed = directory.remove_user(name)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if not removed:
            raise ApiError(404, f"no user {name!r}")
        return {"name": name, "removed": True}


def _time_arg(name: str, value: str) -> float:
    """Epoch seconds, or an ISO 8601 date/time."""
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import datetime

    try:
        # A '+' of a UTC offset arrives as a space when the client did not escape it.
        return datetime.fromisoformat(value.replace(" ", "+") if "T" in value else value).timestamp()
    except ValueError:
        raise ApiError(400, f"'{name}' must be epoch seconds or an ISO 8601 time, not {value!r}") from None
