"""The real ``openstack`` and ``nova`` CLIs, each call a process of its own, without their start-up each time.

``openstack`` spends about 2 s of CPU importing before it sends a request, and the suite calls it hundreds of
times per backend: most of the CI's time once the suite ran on three backends. A zygote process imports both
CLIs' modules once; each call is a fork of it that takes the call's environment, arguments and output files
and runs the console script's ``main()`` with the call's arguments (what the installed ``openstack`` and
``nova`` scripts run), then exits with its status. A call is still a process of its own, so nothing one call
does reaches the next; only the imports are shared. ``run`` answers like ``subprocess.run(capture_output=True,
text=True)``.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

ENTRY_POINTS = {"openstack": "openstackclient.shell", "nova": "novaclient.shell"}  # console script → module


# -- the zygote (this file run as a script) ---------------------------------------------------------------------

def serve(path: str) -> None:
    mains = {name: importlib.import_module(module).main for name, module in ENTRY_POINTS.items()}
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the calls
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            _call(conn, mains)  # never returns
        conn.close()


def _call(conn: socket.socket, mains: dict) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    status = 1
    try:
        request = json.loads(conn.makefile("r").readline())
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        conn.sendall(f"{os.getpid()}\n".encode())
        sys.argv = [request["name"], *request["args"]]
        try:
            # The arguments the script's main() would read from sys.argv[1:] (novaclient reads them at import).
            status = mains[request["name"]](request["args"])
        except SystemExit as exit_:
            status = exit_.code
        if isinstance(status, str):  # what the interpreter does with sys.exit("message")
            print(status, file=sys.stderr)
            status = 1
        status = status or 0
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            conn.sendall(f"{status}\n".encode())
        finally:
            os._exit(status if isinstance(status, int) and 0 <= status < 256 else 1)


# -- the tests' side --------------------------------------------------------------------------------------------

class Zygote:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="novalite-cli-"))
        self.path = str(self.dir / "zygote.sock")
        self.proc = subprocess.Popen([sys.executable, __file__, self.path], stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the CLI zygote did not start (exit status {self.proc.wait()})")

    def run(self, name: str, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        with tempfile.NamedTemporaryFile(dir=self.dir, delete=False) as out, \
                tempfile.NamedTemporaryFile(dir=self.dir, delete=False) as err:
            pass
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout)
                conn.connect(self.path)
                request = {"name": name, "args": args, "env": env, "stdout": out.name, "stderr": err.name}
                conn.sendall((json.dumps(request) + "\n").encode())
                answers = conn.makefile("r")
                pid = int(answers.readline())
                try:
                    line = answers.readline()
                except TimeoutError:
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired([name, *args], timeout) from None
                if not line:
                    raise RuntimeError(f"{name} {' '.join(args)}: the call's process died without a status")
            return subprocess.CompletedProcess([name, *args], int(line), Path(out.name).read_text(),
                                               Path(err.name).read_text())
        finally:
            os.unlink(out.name)
            os.unlink(err.name)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        for leftover in self.dir.iterdir():
            leftover.unlink()
        self.dir.rmdir()


_zygote: Zygote | None = None
_lock = threading.Lock()


def run(name: str, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run console script ``name`` (``openstack`` or ``nova``) with ``args`` and exactly ``env``."""
    global _zygote
    with _lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = Zygote()
        zygote = _zygote
    return zygote.run(name, args, env, timeout)


def close() -> None:
    global _zygote
    with _lock:
        if _zygote is not None:
            _zygote.close()
            _zygote = None


if __name__ == "__main__":
    serve(sys.argv[1])
