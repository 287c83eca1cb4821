"""Harness of the Python end-to-end suite.

`start_server()` launches the real `realtime-server` binary on a free
loopback port (with fresh numeric app credentials, or with none: the
development app), waits until `GET /up` answers 200 and returns a handle
with the port, the credentials, the official `pusher` server SDK bound to
it, and a factory of raw WebSocket clients (`websocket-client`) that speak
the Pusher protocol. Every wait has a deadline and fails with a message
naming what it waited for and the server's output; at the end the server
gets SIGTERM and must exit 0.

The binary is `$REALTIME_SERVER_BIN`, else `target/release`, else
`target/debug` (build it with `cargo build --release -p realtime-server`).
"""

import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pusher
import pytest
import websocket

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent

#: Deadline of one expected thing (a frame, a response).
WAIT_S = 5.0
READY_DEADLINE_S = 15.0
STOP_DEADLINE_S = 5.0


def server_binary():
    from_env = os.environ.get("REALTIME_SERVER_BIN")
    if from_env:
        path = Path(from_env).resolve()
        if not path.exists():
            raise RuntimeError(
                f"REALTIME_SERVER_BIN={from_env} does not exist; build it with "
                "`cargo build --release -p realtime-server`"
            )
        return path
    candidates = [
        ROOT / "target" / "release" / "realtime-server",
        ROOT / "target" / "debug" / "realtime-server",
    ]
    for path in candidates:
        if path.exists():
            return path
    raise RuntimeError(
        f"realtime-server not found (looked at {', '.join(map(str, candidates))}); "
        "build it with `cargo build --release -p realtime-server` or set REALTIME_SERVER_BIN"
    )


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=1.0):
    """Status and body of a plain GET; HTTP errors are answers, not raises."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Socket:
    """A Pusher protocol client on a raw WebSocket."""

    def __init__(self, port, key):
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/app/{key}?protocol=7&client=python-e2e&version=1.0",
            timeout=WAIT_S,
        )
        hello = self.recv()
        assert hello["event"] == "pusher:connection_established", hello
        self.socket_id = json.loads(hello["data"])["socket_id"]

    def send(self, event, data, channel=None):
        frame = {"event": event, "data": data}
        if channel is not None:
            frame["channel"] = channel
        self.ws.send(json.dumps(frame))

    def recv(self):
        """The next frame, parsed; fails after WAIT_S without one."""
        try:
            text = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"no frame within {WAIT_S} s") from None
        return json.loads(text)

    def recv_event(self, event):
        """The next frame, which must be `event`; returns it with `data` decoded."""
        frame = self.recv()
        assert frame["event"] == event, f"expected {event}, got {frame}"
        data = frame.get("data")
        if isinstance(data, str):
            try:
                frame["data"] = json.loads(data)
            except ValueError:
                pass
        return frame

    def subscribe(self, channel, auth=None, channel_data=None):
        """Sends a subscribe; returns the answer frame (data decoded)."""
        data = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        frame = self.recv()
        if isinstance(frame.get("data"), str):
            frame["data"] = json.loads(frame["data"])
        return frame

    def close(self):
        try:
            self.ws.close()
        except OSError:
            pass


class Server:
    """A running realtime-server process."""

    def __init__(self, dev_app=False):
        self.bin = server_binary()
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        args = [str(self.bin), "--bind", f"127.0.0.1:{self.port}", "--log-level", "info"]
        if dev_app:
            self.app_id = self.key = self.secret = None
        else:
            # Numeric, as Pusher app ids are (the SDK refuses others).
            self.app_id = str(random.randint(100000, 999999))
            self.key = f"key-{secrets.token_hex(4)}"
            self.secret = f"secret-{secrets.token_hex(8)}"
            args += ["--app-id", self.app_id, "--app-key", self.key, "--app-secret", self.secret]
        self.args = args
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.sockets = []
        self._wait_ready()
        if dev_app:
            self._read_dev_credentials()
        self.sdk = self.sdk_with()

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-20000:]

    def describe(self):
        return f"{' '.join(self.args)}\n--- server output ---\n{self.output()}\n---"

    def _wait_ready(self):
        deadline = time.monotonic() + READY_DEADLINE_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"realtime-server exited with {self.proc.returncode} before it was up\n{self.describe()}"
                )
            try:
                status, _ = http_get(self.port, "/up", timeout=0.5)
                if status == 200:
                    return
                last = f"status {status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(
            f"realtime-server did not answer 200 on /up within {READY_DEADLINE_S} s ({last})\n{self.describe()}"
        )

    def _read_dev_credentials(self):
        """Reads the development app's credentials from the start-up line."""
        pattern = re.compile(r"development app .*app_id=(\S+) key=(\S+) secret=(\S+)")
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            m = pattern.search(self.output())
            if m:
                self.app_id, self.key, self.secret = m.groups()
                return
            time.sleep(0.05)
        raise RuntimeError(f"no development app line in the output\n{self.describe()}")

    def sdk_with(self, **overrides):
        """The official SDK bound to this server; `overrides` change its options."""
        options = dict(
            app_id=self.app_id,
            key=self.key,
            secret=self.secret,
            host="127.0.0.1",
            port=self.port,
            ssl=False,
            timeout=WAIT_S,
        )
        options.update(overrides)
        return pusher.Pusher(**options)

    def socket(self):
        s = Socket(self.port, self.key)
        self.sockets.append(s)
        return s

    def stop(self):
        """SIGTERM; the server must exit 0 within STOP_DEADLINE_S."""
        for s in self.sockets:
            s.close()
        if self.proc.poll() is not None:
            raise AssertionError(
                f"realtime-server had already exited with {self.proc.returncode}\n{self.describe()}"
            )
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"realtime-server ignored SIGTERM for {STOP_DEADLINE_S} s\n{self.describe()}"
            ) from None
        assert code == 0, f"realtime-server exited {code} after SIGTERM\n{self.describe()}"
        self.log.close()


@pytest.fixture(scope="module")
def server():
    """One server (fresh numeric credentials) per test module."""
    srv = Server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def close_sockets(request):
    """Closes the sockets a test opened, so tests do not share state."""
    yield
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        for s in srv.sockets:
            s.close()
        srv.sockets.clear()


def uid(prefix=""):
    return f"{prefix}{secrets.token_hex(4)}"
