"""A Triton Inference Server from the nvidia-pytriton wheel, started on 127.0.0.1 (the bench's
`triton` row and the tests that serve roadseg's repositories through a real server).

    with TritonServer(repo, scratch) as server:     # ready when the block starts, stopped after it
        server.http_url, server.grpc_url            # "127.0.0.1:PORT"

nvidia-pytriton ships a `tritonserver` build with the Python backend only (pytriton/tritonserver/:
bin/tritonserver, backends/python/, python_backend_stubs/3.X/triton_python_backend_stub, its
libraries in nvidia_pytriton.libs/). Started as a stock server it needs what pytriton itself sets up
(pytriton/triton.py): a backend folder whose python/ holds the stub built for this Python (here a
folder of links in `scratch`), and the wheel's libraries on LD_LIBRARY_PATH. The wheel's own Python
package is not imported (it requires NumPy < 2; only its server is used).

The server listens on 127.0.0.1 only, on free ports (HTTP, gRPC, metrics). Readiness is its
/v2/health/ready endpoint, polled until a deadline; a server that exits first, or is not ready by
then, is stopped and reported with the end of its log. stop() sends SIGTERM (Triton unloads its
models and ends their stubs), then SIGKILL after a grace period; it is safe to call twice.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from roadseg.core.errors import MissingDependencyError, RoadsegError

INSTALL_HINT = "pip install --no-deps nvidia-pytriton && pip install 'tritonclient[grpc,http]' (see docs/EXPORT.md)"


@dataclass(frozen=True)
class TritonInstall:
    server: Path  # bin/tritonserver
    backends: Path  # backends/ (python/ without a stub)
    stub: Path  # the Python backend stub built for this Python
    libs: Path  # nvidia_pytriton.libs/


def find_install() -> TritonInstall | None:
    """The nvidia-pytriton wheel's server for this Python, found without importing pytriton; None without one."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = TritonInstall(dist / "bin" / "tritonserver", dist / "backends", dist / "python_backend_stubs" / version /
                          "triton_python_backend_stub", root.parent / "nvidia_pytriton.libs")  # fmt: skip
    return found if found.server.is_file() and found.stub.is_file() else None


def missing() -> str | None:
    """None when a Triton server and its clients are installed here, else what is missing and how to install it."""
    if find_install() is None:
        return f"nvidia-pytriton (the Triton server for Python {sys.version_info[0]}.{sys.version_info[1]}) is not installed: {INSTALL_HINT}"
    if importlib.util.find_spec("tritonclient") is None:
        return f"tritonclient is not installed: {INSTALL_HINT}"
    return None


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 just now (bound at once, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def backend_folder(install: TritonInstall, scratch: Path) -> Path:
    """scratch/backends: links to the wheel's backends, with the stub for this Python in python/."""
    folder = scratch / "backends"
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    links = {p.name: p for p in (install.backends / "python").iterdir() if p.is_file()}
    links["triton_python_backend_stub"] = install.stub
    for name, target in links.items():
        link = python / name
        if not link.is_symlink():
            link.symlink_to(target)
    return folder


class TritonServer:
    """tritonserver on `repo`, ready on return (see the module docstring). models: with explicit model
    control, the models to load at start (others with the client's load_model); None: load them all."""

    def __init__(self, repo: Path, scratch: Path, models: list[str] | None = None, ready_timeout_s: float = 90.0,
                 stop_timeout_s: float = 20.0) -> None:  # fmt: skip
        install = find_install()
        if install is None:
            raise MissingDependencyError(f"no Triton server: {missing()}")
        scratch.mkdir(parents=True, exist_ok=True)
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.log_path = scratch / "tritonserver.log"
        self.stop_timeout_s = stop_timeout_s
        cmd = [str(install.server), f"--model-repository={repo}", f"--backend-directory={backend_folder(install, scratch)}",
               "--http-address=127.0.0.1", f"--http-port={self.http_port}", "--grpc-address=127.0.0.1",
               f"--grpc-port={self.grpc_port}", "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
               "--allow-gpu-metrics=false", "--exit-timeout-secs=10"]  # fmt: skip
        if models is not None:
            cmd += ["--model-control-mode=explicit", *[f"--load-model={m}" for m in models]]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(install.libs), env.get("LD_LIBRARY_PATH")) if p)
        # a process group of its own, so stop() can end the server and its stubs together; not a session of
        # its own, which Linux's autogroup scheduling would give a CPU share apart from the client's
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
        with open(self.log_path, "wb") as log:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **group
            )
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def _log_tail(self, lines: int = 3) -> str:
        """Triton's error lines (glog's E level, `error:`), else the last lines of its log, in one line."""
        text = [ln.strip() for ln in self.log().splitlines() if ln.strip()]
        errors = [ln for ln in text if re.match(r"E\d{4} |error:", ln) and "CudaDriverHelper" not in ln]  # no GPU: not the cause
        picked = errors[:lines] if errors else text[-lines:]
        return " | ".join(ln.split("\\n")[0][:600] for ln in picked) or "no output"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc is not None else None
                raise RoadsegError(f"tritonserver exited (code {code}) before it was ready: {self._log_tail()} "
                                   f"(log: {self.log_path})")  # fmt: skip
            if self.ready():
                return
            time.sleep(0.1)
        raise RoadsegError(
            f"tritonserver was not ready within {timeout_s:.0f} s: {self._log_tail()} (log: {self.log_path})"
        )

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after stop_timeout_s); its exit code, None if it was not running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the server and its stubs (their process group)
                except ProcessLookupError:
                    pass
                proc.wait()
        return proc.returncode

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
