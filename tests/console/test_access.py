"""Who may use the console: the Unix socket is the server user's only; TCP needs the token."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess

import pytest

from tests.console.conftest import make_base, run_cli, start_server
from tests.peers.server import REPO_ROOT, VoxlabServer, free_sip_port
from voxlab.console.client import ConsoleClient, ConsoleClientError, Endpoint
from voxlab.console.protocol import LineDecoder, encode

pytestmark = pytest.mark.e2e

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def tcp_server():
    base = make_base()
    port = free_sip_port()
    srv = start_server(base, extra_args=["--console-tcp", f"127.0.0.1:{port}"])
    srv.console_port = port
    yield srv
    srv.stop()
    shutil.rmtree(base, ignore_errors=True)


def _raw_exchange(port: int, *messages: dict, timeout: float = 10) -> tuple[list[dict], bool]:
    """Send requests on a fresh TCP connection; the messages received, and whether the server closed it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    decoder = LineDecoder()
    received: list[dict] = []
    closed = False
    try:
        for m in messages:
            sock.sendall(encode(m))
        while True:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            received.extend(decoder.feed(data))
            if len(received) >= len(messages) and not closed:
                sock.settimeout(5)        # the replies are in: wait for the close (it comes at once)
    finally:
        sock.close()
    return received, closed


def test_unix_socket_is_private(tcp_server):
    path = tcp_server.data_dir / "console.sock"
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()


def _as_nobody(*args: str) -> subprocess.CompletedProcess:
    """The real CLI (system python, the checkout on PYTHONPATH) run as user nobody."""
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           SYSTEM_PYTHON, "-m", "voxlab.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, cwd="/")


NOT_TESTED = "NOT TESTED here: refusing another Unix user (socket mode 0600 and SO_PEERCRED) - "


@pytest.mark.skipif(os.geteuid() != 0, reason=NOT_TESTED + "running a client as user nobody needs root "
                                              "(CI runs the suite as root, so it runs there)")
@pytest.mark.skipif(shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON),
                    reason=NOT_TESTED + "needs setpriv and /usr/bin/python3 to run a client as user nobody")
def test_another_user_is_refused(tcp_server):
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "True":
        pytest.skip(NOT_TESTED + "the system python (which runs the client as user nobody) is older than 3.11")
    data = str(tcp_server.data_dir)
    sock = tcp_server.data_dir / "console.sock"

    # the socket's mode keeps other users out
    denied = _as_nobody("sessions", "--data-dir", data)
    assert denied.returncode == 2, denied
    assert "permission denied" in denied.stderr

    # even if the socket were opened up, the peer-credential check refuses them (and logs it)
    os.chmod(sock, 0o666)
    try:
        refused = _as_nobody("sessions", "--data-dir", data)
    finally:
        os.chmod(sock, 0o600)
    assert refused.returncode == 2, refused
    assert "refused" in refused.stderr and "uid 65534" in refused.stderr
    assert tcp_server.wait_for_log(r"console: refused connection from uid 65534", timeout=10)

    # the server's own user still gets in
    mine = run_cli("sessions", "--data-dir", data)
    assert mine.returncode == 0, mine.stderr


def test_tcp_token_file_and_log(tcp_server):
    token_file = tcp_server.data_dir / "console.token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 24
    assert tcp_server.wait_for_log(r"clients must send this token: " + token, timeout=5)


def test_tcp_without_authentication_is_refused(tcp_server):
    port = tcp_server.console_port
    # an op before hello
    got, closed = _raw_exchange(port, {"id": 1, "op": "sessions"})
    assert got and got[0]["ok"] is False and "authentication required" in got[0]["error"] and closed
    # hello without a token
    got, closed = _raw_exchange(port, {"id": 1, "op": "hello"})
    assert got[0]["ok"] is False and "authentication failed" in got[0]["error"] and closed
    # a wrong token
    got, closed = _raw_exchange(port, {"id": 1, "op": "hello", "token": "not-the-token"},
                                {"id": 2, "op": "eval", "source": "1"})
    assert got[0]["ok"] is False and closed
    assert all(m.get("ok") is not True for m in got)
    # no op, or not JSON at all
    got, closed = _raw_exchange(port, {"id": 1})
    assert got[0]["ok"] is False and closed
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert b"bad request" in data            # answered once, then the connection was closed
    for pattern in (r"refused unauthenticated 'sessions' request from tcp:127\.0\.0\.1",
                    r"refused connection from tcp:127\.0\.0\.1:\d+: no token",
                    r"refused connection from tcp:127\.0\.0\.1:\d+: wrong token"):
        assert tcp_server.wait_for_log(pattern, timeout=10), pattern

    with pytest.raises(ConsoleClientError, match="authentication failed"):
        ConsoleClient.connect(Endpoint(host="127.0.0.1", port=port, token="wrong"))
    cli = run_cli("sessions", "--tcp", f"127.0.0.1:{port}", "--token", "wrong")
    assert cli.returncode == 2 and "authentication failed" in cli.stderr
    cli = run_cli("sessions", "--tcp", f"127.0.0.1:{port}", env={**os.environ, "VOXLAB_CONSOLE_TOKEN": ""})
    assert cli.returncode == 2
    # no token at all: the client says where to get one instead of an authentication failure
    assert "needs the console token" in cli.stderr and "--token" in cli.stderr, cli.stderr
    assert "VOXLAB_CONSOLE_TOKEN" in cli.stderr and "console.token" in cli.stderr


def test_tcp_with_the_token_works(tcp_server):
    port = tcp_server.console_port
    token = (tcp_server.data_dir / "console.token").read_text().strip()
    with ConsoleClient.connect(Endpoint(host="127.0.0.1", port=port, token=token)) as client:
        assert client.request("sessions")["ok"] is True
        assert client.request("complete", source="pri")["completions"][0]["text"] == "print"
    cli = run_cli("sessions", "--tcp", f"127.0.0.1:{port}", "--token", token)
    assert cli.returncode == 0, cli.stderr
    cli = run_cli("sessions", "--tcp", f"127.0.0.1:{port}",
                  env={**os.environ, "VOXLAB_CONSOLE_TOKEN": token})
    assert cli.returncode == 0, cli.stderr
    # on the server's machine, --data-dir is enough: the client reads DATA_DIR/console.token
    no_env = {k: v for k, v in os.environ.items() if k != "VOXLAB_CONSOLE_TOKEN"}
    cli = run_cli("sessions", "--tcp", f"127.0.0.1:{port}", "--data-dir", str(tcp_server.data_dir), env=no_env)
    assert cli.returncode == 0, cli.stderr


def test_stale_socket_is_replaced_and_a_live_one_is_not_stolen(tcp_server):
    # a socket file left by a server that died: the next server replaces it
    base = make_base()
    try:
        data = base / "data"
        data.mkdir()
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(data / "console.sock"))
        stale.close()
        srv = start_server(base)
        try:
            assert run_cli("sessions", "--data-dir", str(data)).returncode == 0
            # a second server on the same data dir must not take the first one's console
            other = VoxlabServer(data_dir=data, scenarios=srv.scenarios_dir, log_path=base / "second.log")
            other.start(timeout=30)
            try:
                assert other.wait_for_log(r"another voxlab serves .*console\.sock", timeout=10)
                with ConsoleClient.connect(Endpoint(socket_path=data / "console.sock")) as client:
                    assert client.request("hello")["ok"]
            finally:
                other.stop()
            assert run_cli("sessions", "--data-dir", str(data)).returncode == 0
        finally:
            srv.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
