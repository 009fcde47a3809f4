"""The suite's processes — the real clients' CLIs and novalite's own servers — without their start-up each time.

Importing is most of a Python process's start: ``openstack`` spends about 2 s of CPU before it sends a
request, ``novalite api`` as much before a worker answers, and the suite starts such processes thousands of
times over its three backend runs. A zygote process imports a console script's modules once; each process
the suite asks for is a fork of it that takes the request's arguments, environment, working directory and
output files, and runs the console script's ``main()`` as the installed script would, then exits as that
script exits (the interpreter's own exit: atexit handlers, non-daemon threads). So every call and every
server is still a process of its own, in its own session when asked, and nothing one does reaches another;
only the imports are shared.

Two zygotes, each started on first use: ``clients`` (``openstack``, ``nova``) and ``novalite`` (``novalite``,
with the API, agent, scheduler and monitor modules imported). The zygote reaps its children and tells the
requester each one's exit status, so a ``Process`` answers like ``subprocess.Popen`` (``poll``, ``wait``,
``returncode``, signals); ``run`` answers like ``subprocess.run(capture_output=True, text=True)``.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# zygote → console scripts it runs (name → "module:function") and modules it imports beforehand.
ZYGOTES = {
    "clients": ({"openstack": "openstackclient.shell:main", "nova": "novaclient.shell:main"}, []),
    "novalite": ({"novalite": "novalite.cli.main:main"},
                 ["novalite.api.app", "novalite.cli.api_server", "gunicorn.workers.gthread", "novalite.agent.compute",
                  "novalite.scheduler_service", "novalite.monitor.service", "novalite.cli.client_commands",
                  "keystoneauth1.session", "keystoneauth1.loading"]),
}


# -- the zygote (this file run as a script) ---------------------------------------------------------------------

def serve(path: str, kind: str) -> tuple[dict, object]:
    """Answer requests until a fork: returns, in the child only, the request and the script's main."""
    scripts, preload = ZYGOTES[kind]
    mains = {}
    for name, target in scripts.items():
        module, function = target.split(":")
        mains[name] = getattr(importlib.import_module(module), function)
    for module in preload:
        importlib.import_module(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD writes to the wakeup fd
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)  # a pipe from the requester: EOF when it is gone
    waiting: dict[int, socket.socket] = {}  # child pid → the requester's connection
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.fileobj is wake_r:
                wake_r.recv(4096)
                _reap(waiting)
                continue
            if key.fileobj is sys.stdin:
                if not os.read(0, 4096):
                    os._exit(0)  # the suite (or benchmark) that started it is gone; its processes live on
                continue
            conn, _ = listener.accept()
            request = json.loads(conn.makefile("r").readline())
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for sock in (listener, wake_r, wake_w, conn, *waiting.values()):
                    sock.close()
                selector.close()
                return request, mains[request["name"]]
            conn.sendall(f"{pid}\n".encode())
            waiting[pid] = conn
        _reap(waiting)


def _reap(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = waiting.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass  # the requester is gone
            conn.close()


def become(request: dict) -> None:
    """In the fork: the process the request describes (session, network namespace, directory, environment,
    output, argv)."""
    if request["new_session"]:
        os.setsid()
    if request["netns"]:
        _enter_netns(request["netns"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        flags = os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_APPEND
        target = os.open(request[name], flags, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [request["name"], *request["args"]]


def _enter_netns(name: str) -> None:
    """Into the named network namespace, as ``ip netns exec NAME`` puts the command it runs (setns(2) on
    /run/netns/NAME; sockets made from now on are the namespace's)."""
    import ctypes

    clone_newnet = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, clone_newnet) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into network namespace {name}: {os.strerror(error)}")
    finally:
        os.close(fd)


# -- the suite's side -------------------------------------------------------------------------------------------

class Process:
    """A forked process as ``subprocess.Popen`` shows one; its exit status comes from the zygote."""

    def __init__(self, args: list[str], conn: socket.socket) -> None:
        self.args = args
        self._conn = conn
        self._buffer = b""
        self.pid = int(self._line(timeout=30))
        self.returncode: int | None = None

    def _line(self, timeout: float | None) -> str | None:
        """The zygote's next line, or None when none came within ``timeout`` (0: just look)."""
        self._conn.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                data = self._conn.recv(64)
            except (TimeoutError, BlockingIOError):
                return None
            if not data:
                raise RuntimeError(f"{' '.join(self.args)}: the zygote died before answering")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _read_status(self, timeout: float | None) -> int | None:
        line = self._line(timeout)
        if line is None:
            return None
        self.returncode = int(line)
        self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        return self.returncode if self.returncode is not None else self._read_status(0)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and self._read_status(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    def __init__(self, kind: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"novalite-zygote-{kind}-"))
        self.path = str(self.dir / "zygote.sock")
        self.proc = subprocess.Popen([sys.executable, __file__, self.path, kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {kind} zygote did not start (exit status {self.proc.wait()})")

    def spawn(self, name: str, args: list[str], *, env: dict[str, str], stdout: str, stderr: str,
              stdin: str = os.devnull, cwd: str | None = None, new_session: bool = True,
              netns: str | None = None) -> Process:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        request = {"name": name, "args": args, "env": env, "stdin": stdin, "stdout": stdout, "stderr": stderr,
                   "cwd": cwd or os.getcwd(), "new_session": new_session, "netns": netns}
        conn.sendall((json.dumps(request) + "\n").encode())
        return Process([name, *args], conn)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        for leftover in self.dir.iterdir():
            leftover.unlink()
        self.dir.rmdir()


_zygotes: dict[str, Zygote] = {}
_lock = threading.Lock()


def zygote_for(name: str) -> Zygote:
    kind = next(kind for kind, (scripts, _) in ZYGOTES.items() if name in scripts)
    with _lock:
        zygote = _zygotes.get(kind)
        if zygote is None or zygote.proc.poll() is not None:
            zygote = _zygotes[kind] = Zygote(kind)
        return zygote


def spawn(name: str, args: list[str], *, env: dict[str, str] | None = None, log: Path | str, **kwargs) -> Process:
    """Console script ``name`` with ``args`` as a process of its own in a new session, stdout and stderr
    appended to ``log`` (there once this returns); ``env`` (default: this process's) is its whole environment;
    ``netns=NAME`` runs it in that network namespace."""
    Path(log).touch()
    return zygote_for(name).spawn(name, args, env=dict(os.environ if env is None else env), stdout=str(log),
                                  stderr=str(log), **kwargs)


def run(name: str, args: list[str], env: dict[str, str], timeout: float,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run console script ``name`` with ``args`` and exactly ``env``, to completion, its output captured."""
    zygote = zygote_for(name)
    with tempfile.NamedTemporaryFile(dir=zygote.dir, delete=False) as out, \
            tempfile.NamedTemporaryFile(dir=zygote.dir, delete=False) as err:
        pass
    try:
        proc = zygote.spawn(name, args, env=env, stdout=out.name, stderr=err.name, cwd=cwd, new_session=False)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess([name, *args], proc.returncode, Path(out.name).read_text(),
                                           Path(err.name).read_text())
    finally:
        os.unlink(out.name)
        os.unlink(err.name)


def close() -> None:
    with _lock:
        for zygote in _zygotes.values():
            zygote.close()
        _zygotes.clear()


if __name__ == "__main__":
    request, main = serve(sys.argv[1], sys.argv[2])
    become(request)
    del request
    # The arguments the script's main() would read from sys.argv[1:] (openstackclient binds them at import).
    sys.exit(main(sys.argv[1:]))
