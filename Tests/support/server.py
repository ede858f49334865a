"""The control-plane server (`aerogrid serve`) for the suites: its configuration file, the
process with a thread reading its stdout, a small HTTP client over http.client (any method,
any status, no redirects, no exceptions for 4xx/5xx), bundles built as zips in memory, and
the platform a test module runs on: embedded Kafka with a server on it.

Every wait here has a deadline, like harness.py's.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import secrets
import socket
import stat
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import quote, urlencode

from .harness import AEROGRID, ORDERSAPP, REPO, Deadline, KafkaCluster, Managed, Orders, ProcessError, log

OPENAPI = REPO / "Sources" / "AeroGridAPI" / "openapi.json"


def free_port() -> int:
    """A port nothing listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_operator_token() -> str:
    """A token in the server's own shape: agt_ and 43 base64url characters."""
    return "agt_" + secrets.token_urlsafe(32)


# --------------------------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, method: str, path: str, status: int, headers: dict, body: bytes) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers  # lowercase names
        self.body = body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise AssertionError(f"{self.method} {self.path} answered {self.status} with a body that is not JSON "
                                 f"({error}): {self.body[:500]!r}") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def error(self) -> dict:
        """The `error` object of an error answer, checked against docs/api.md's shape."""
        body = self.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), \
            f"{self.method} {self.path} ({self.status}): not an error object: {body}"
        error = body["error"]
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str) and error["message"], \
            f"{self.method} {self.path} ({self.status}): the error needs a code and a message: {body}"
        return error

    def __repr__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.body[:300]!r}"


def expect(response: Response, status: int, code: str | None = None) -> Response:
    """Asserts the status (and, for an error, its code), with the whole answer in the message."""
    assert response.status == status, f"expected {status}{' ' + code if code else ''}, got {response!r}"
    if code is not None:
        assert response.error["code"] == code, f"expected code {code!r}, got {response!r}"
    return response


class Client:
    """Requests to one server, as one bearer token (or none)."""

    def __init__(self, host: str, port: int, token: str | None = None, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout

    def as_token(self, token: str | None) -> Client:
        return Client(self.host, self.port, token, self.timeout)

    def connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)

    def request(self, method: str, path: str, *, json_body=None, body: bytes | None = None,
                content_type: str | None = None, query: dict | None = None, headers: dict | None = None,
                authorization: str | None = None, timeout: float | None = None) -> Response:
        if query:
            path = f"{path}?{urlencode(query)}"
        all_headers = {"Accept": "application/json"}
        if authorization is not None:
            all_headers["Authorization"] = authorization
        elif self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        if content_type:
            all_headers["Content-Type"] = content_type
        all_headers.update(headers or {})
        connection = self.connection(timeout)
        try:
            connection.request(method, path, body=body, headers=all_headers)
            answer = connection.getresponse()
            data = answer.read()
            return Response(method, path, answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        finally:
            connection.close()

    def get(self, path: str, **options) -> Response:
        return self.request("GET", path, **options)

    def post(self, path: str, **options) -> Response:
        return self.request("POST", path, **options)

    def delete(self, path: str, **options) -> Response:
        return self.request("DELETE", path, **options)

    def upload(self, body: bytes, timeout: float = 60.0) -> Response:
        """POST /api/v1/apps with a large body, tolerating a server that answers and closes
        before it has read everything (413 early): the answer is read after a failed send."""
        connection = self.connection(timeout)
        try:
            connection.putrequest("POST", "/api/v1/apps")
            connection.putheader("Authorization", f"Bearer {self.token}")
            connection.putheader("Content-Type", "application/zip")
            connection.putheader("Content-Length", str(len(body)))
            connection.putheader("Accept", "application/json")
            connection.endheaders()
            try:
                view = memoryview(body)
                for start in range(0, len(body), 1 << 16):
                    connection.send(view[start:start + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = connection.getresponse()
            data = answer.read()
            return Response("POST", "/api/v1/apps", answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        finally:
            connection.close()

    # ---- the API's routes

    def deploy(self, bundle: bytes) -> Response:
        return self.post("/api/v1/apps", body=bundle, content_type="application/zip", timeout=60)

    def app(self, name: str) -> Response:
        return self.get(f"/api/v1/apps/{quote(name)}")

    def action(self, name: str, action: str) -> Response:
        return self.post(f"/api/v1/apps/{quote(name)}/{action}", timeout=60)

    def grid(self, app: str, grid: str, **options) -> Response:
        return self.get(f"/api/v1/apps/{quote(app)}/grids/{quote(grid)}", **options)


# --------------------------------------------------------------------------------------------
# The server process


class Server(Managed):
    """`aerogrid serve --config FILE` with its configuration written from the arguments."""

    def __init__(self, directory: Path, bootstrap: str, *, name: str = "server",
                 operator_token: str | None = None, data_dir: Path | None = None,
                 kafka_properties: dict | None = None, wait: bool = True, tls: tuple | None = None,
                 top_level: list | None = None, tables: dict | None = None, port: int | None = None,
                 env: dict | None = None) -> None:
        """With `tls` (certificate, key), `listen` is HTTPS on `tls_port` and `http_listen` a
        plain-HTTP listener on `port`, the one the helpers (client, waits) use (a free one
        unless given). `top_level`: more `key = value` lines; `tables`: more tables,
        {"http": {"idle_timeout": 5}}; `env`: more environment variables."""
        self.directory = directory
        self.data_dir = data_dir or directory / "data"
        self.tmp_dir = directory / "tmp"  # the server's TMPDIR: a refused upload leaves nothing here either
        self.tmp_dir.mkdir(mode=0o755, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.tls_port = free_port() if tls is not None else None
        self.operator_token = operator_token
        self.config_path = directory / f"{name}.toml"
        properties = {"fetch.wait.max.ms": "10", **(kafka_properties or {})}
        lines = [f'data_dir = "{self.data_dir}"'] + list(top_level or [])
        if tls is not None:
            lines += [f'listen = "{self.host}:{self.tls_port}"', f'http_listen = "{self.host}:{self.port}"', "", "[tls]",
                      f'certificate = "{tls[0]}"', f'key = "{tls[1]}"']
        else:
            lines += [f'listen = "{self.host}:{self.port}"']
        lines += ["", "[kafka]", f'bootstrap = "{bootstrap}"', "", "[kafka.properties]"]
        lines += [f'"{key}" = "{value}"' for key, value in properties.items()]
        for table, values in (tables or {}).items():
            lines += ["", f"[{table}]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if k != "AEROGRID_OPERATOR_TOKEN"}
        env["TMPDIR"] = str(self.tmp_dir)
        env.update(extra)
        if operator_token is not None:
            env["AEROGRID_OPERATOR_TOKEN"] = operator_token
        self.lines: list = []
        self.condition = threading.Condition()
        self.eof = False
        super().__init__(name, [AEROGRID, "serve", "--config", self.config_path], directory, cwd=REPO, env=env)
        self.stdout_path = directory / f"{name}.stdout"
        self.reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self.reader.start()
        log(f"{name}: started (pid {self.pid}, http://{self.host}:{self.port}, data dir {self.data_dir})")
        if wait:
            self.wait_healthy()

    def _read(self) -> None:
        with open(self.stdout_path, "w") as copy:
            for raw in self.proc.stdout:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                copy.write(text + "\n")
                copy.flush()
                with self.condition:
                    self.lines.append(text)
                    self.condition.notify_all()
        with self.condition:
            self.eof = True
            self.condition.notify_all()

    def stdout_lines(self) -> list:
        with self.condition:
            return list(self.lines)

    def wait_line(self, predicate, timeout: float, what: str) -> str:
        deadline = Deadline(timeout, what)
        with self.condition:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                if self.eof:
                    raise ProcessError(f"{self.name} ended (status {self.proc.poll()}) before {what}; "
                                       f"stdout {self.lines[-10:]}; stderr:\n{self.stderr_tail()}")
                if deadline.expired:
                    raise ProcessError(f"no {what} within {timeout} s; stdout {self.lines[-10:]}; "
                                       f"stderr:\n{self.stderr_tail()}")
                self.condition.wait(min(0.5, deadline.remaining) or 0.01)

    def client(self, token: str | None = None) -> Client:
        return Client(self.host, self.port, token)

    @property
    def operator(self) -> Client:
        return self.client(self.operator_token)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = Deadline(timeout, "/healthz")
        last = None
        while not deadline.expired:
            if not self.alive():
                raise ProcessError(f"{self.name} exited with {self.proc.poll()} before answering /healthz; "
                                   f"stdout {self.stdout_lines()[-10:]}; stderr:\n{self.stderr_tail()}")
            try:
                answer = self.client().get("/healthz", timeout=2)
                if answer.status == 200:
                    log(f"{self.name}: healthy {time.monotonic() - self.started:.2f} s after the start")
                    return
                last = answer
            except OSError as error:
                last = error
            time.sleep(0.05)
        raise ProcessError(f"{self.name}: /healthz not 200 within {timeout} s (last: {last}); stderr:\n{self.stderr_tail()}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = Deadline(timeout, "/readyz")
        last = None
        while not deadline.expired:
            last = self.client().get("/readyz", timeout=5)
            if last.status == 200:
                return
            time.sleep(0.1)
        raise ProcessError(f"{self.name}: /readyz not 200 within {timeout} s (last: {last!r}); "
                           f"stderr:\n{self.stderr_tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and a clean exit within `timeout`; returns the exit status."""
        import signal as signals
        self.signal(signals.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout)
        except Exception:
            self.signal(signals.SIGKILL)
            self.proc.wait(timeout=10)
            raise ProcessError(f"{self.name} did not stop within {timeout} s of SIGTERM:\n{self.stderr_tail()}") from None
        self.reader.join(10)
        self._stderr.close()
        return status


# --------------------------------------------------------------------------------------------
# Waiting on the API


def poll(fetch, predicate, timeout: float, what: str, interval: float = 0.2):
    """Calls `fetch()` until `predicate(result)` holds; returns the result. On timeout, fails
    with the last result in the message."""
    deadline = Deadline(timeout, what)
    last = None
    while True:
        last = fetch()
        if predicate(last):
            return last
        if deadline.expired:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def wait_state(client: Client, app: str, states, timeout: float = 60.0) -> dict:
    """Polls GET /apps/{app} until its state is one of `states`; returns the App. An app
    that crashes meanwhile (the apps of these tests never should) fails the wait at once."""
    states = {states} if isinstance(states, str) else set(states)

    def reached(answer: Response) -> bool:
        if answer.status != 200:
            return False
        found = answer.json()
        if found.get("state") in states:
            return True
        if failed(found):
            raise AssertionError(f"app {app} failed while waiting for {sorted(states)}: {found}")
        return False

    return poll(lambda: client.app(app), reached, timeout, f"app {app} in state {sorted(states)}").json()


def failed(app: dict) -> bool:
    """An app that should run but crashed, backs off, or stopped by itself with a crash
    reason (a state of "stopped" alone may be the moment before a start takes effect)."""
    state = app.get("state")
    return state in ("crashed", "backoff") or (
        state == "stopped" and app.get("desired_state") == "running" and app.get("crash_reason") is not None)


# --------------------------------------------------------------------------------------------
# Bundles


def zip_directory(directory: Path, comment: bytes = b"") -> bytes:
    """A bundle of `directory`: its files at the zip's root (no __pycache__)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if "__pycache__" in relative.parts or not path.is_file():
                continue
            archive.write(path, relative.as_posix())
        archive.comment = comment
    return buffer.getvalue()


def zip_entries(entries: list, comment: bytes = b"") -> bytes:
    """A zip from (name or ZipInfo, bytes) pairs, names kept exactly as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = name if isinstance(name, zipfile.ZipInfo) else regular(name)
            archive.writestr(info, data)
        archive.comment = comment
    return buffer.getvalue()


def regular(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def bundle(name: str, code: str) -> bytes:
    """A bundle of one app called `name` whose app.py is `code`."""
    manifest = f'name = "{name}"\nentrypoint = "app.py"\nruntime = "python3.11"\n'
    return zip_entries([("app.toml", manifest.encode()), ("app.py", code.encode())])


def orders_bundle(name: str = "ordersapp") -> bytes:
    """Examples/ordersapp as an app called `name`."""
    return bundle(name, (ORDERSAPP / "app.py").read_text().replace("'ordersapp'", repr(name)))


def digest(bundle: bytes) -> str:
    return hashlib.sha256(bundle).hexdigest()


def tree(path: Path) -> list:
    """Every file and directory below `path` (hidden ones too), with its type and size."""
    found = []
    if not path.exists():
        return found
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = Path(root) / name
            info = full.lstat()
            found.append((str(full.relative_to(path)), stat.S_IFMT(info.st_mode),
                          info.st_size if stat.S_ISREG(info.st_mode) else 0))
    return sorted(found)


# --------------------------------------------------------------------------------------------
# The platform


class Platform:
    """Embedded Kafka and `aerogrid serve` on it with an operator token of its own, in
    `directory`. Every order produced to it goes through `orders`, so an app that has read
    the whole topic has the grid `orders.expected_units()`. `server_options` go to Server."""

    def __init__(self, directory: Path, *, seed: int = 0, **server_options) -> None:
        self.directory = directory
        self.operator_token = new_operator_token()
        self.server_options = server_options
        self.server: Server | None = None
        self.starts = 0
        self.cluster = KafkaCluster(directory)
        try:
            self.orders = Orders(directory, seed=seed)
            self.start_server()
        except BaseException:
            self.stop()
            raise

    def start_server(self) -> Server:
        """A server on the platform's data directory, ready: the first, or another after the
        last one died (it carries on from what that one stored)."""
        self.starts += 1
        name = "server" if self.starts == 1 else f"server-{self.starts}"
        self.server = Server(self.directory, self.cluster.bootstrap, name=name, operator_token=self.operator_token,
                             data_dir=self.directory / "data", **self.server_options)
        self.server.wait_ready()
        return self.server

    def stop(self) -> None:
        try:
            if self.server is not None:
                log(f"{self.server.name}: exited with {self.server.stop()} after SIGTERM")
        finally:
            self.cluster.terminate()
