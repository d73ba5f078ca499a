"""``make run``: the whole product on its embedded defaults, until Ctrl-C.

Starts, in order: the Tansu broker, a Redis server, the parcelwatch worker (with its web server) and the
simulator feeding demo traffic; prints where to look; on Ctrl-C (or SIGTERM) stops everything it
started, in reverse order. A second start works: servers orphaned by a killed run are reaped through
their pid files, and the worker's local table data is discarded because the memory-only broker it was
built against is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import config

from .broker import TansuBroker
from .process import free_port, port_open, reap_pidfile, stop
from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
# Pid files, logs, worker data and ``stack.json`` (``PARCELWATCH_RUN_DIR`` or ``--run-dir`` moves them).
RUN_DIR = Path(os.environ.get("PARCELWATCH_RUN_DIR") or ROOT / ".run")
# What a running ``make run`` tells the command line (``python app.py queue`` / ``simulate``): its broker,
# Redis and web server, which may sit on other ports than the configured ones.
STACK_FILE = "stack.json"
# A worker that exits (non-zero) is started again, at most this many times within the window.
WORKER_RESTARTS = 3
WORKER_RESTART_WINDOW_SECONDS = 600.0


def running_stack(run_dir: Path = RUN_DIR) -> dict[str, str] | None:
    """The URLs of the ``make run`` stack running from ``run_dir`` (None: none is running)."""
    try:
        stack = json.loads((run_dir / STACK_FILE).read_text())
        os.kill(int(stack["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {k: str(v) for k, v in stack.items()}


def _port_from_url(url: str, default: int) -> int:
    tail = url.rsplit(":", 1)[-1].split("/", 1)[0]
    return int(tail) if tail.isdigit() else default


def _pick_port(preferred: int, what: str) -> int:
    if not port_open(preferred):
        return preferred
    port = free_port()
    print(f"  port {preferred} is busy (another program); {what} uses {port} instead")
    return port


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode}; last log lines:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"worker not healthy after {timeout:.0f} s; last log lines:\n{_tail(log)}")


def _tail(path: Path, n: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


# The demo's staff account: every shop, allowed to work issues. Its password is new every run (printed),
# unless PARCELWATCH_DEMO_PASSWORD names one.
DEMO_LOGIN, DEMO_NAME = "demo", "演示客服"


def _demo_account(redis_url: str) -> tuple[str, str]:
    """Create the demo's staff account in the fresh Redis; (login, password)."""
    import asyncio
    import secrets

    from issue_queue.people import People
    from issue_queue.store import IssueStore

    password = os.environ.get("PARCELWATCH_DEMO_PASSWORD") or secrets.token_hex(5)

    async def create() -> None:
        store = IssueStore.from_url(redis_url)
        try:
            await People(store.redis, store.prefix).add(DEMO_LOGIN, DEMO_NAME, ["*"], "agent", password)
        finally:
            await store.redis.aclose()

    asyncio.run(create())
    return DEMO_LOGIN, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=str(RUN_DIR), help="pid files, logs and worker data")
    parser.add_argument("--no-simulator", action="store_true", help="start everything but the demo traffic")
    parser.add_argument("--parcels", type=int, default=2000, help="demo parcels the simulator generates")
    parser.add_argument("--rate", type=float, default=None, help="demo events per second")
    parser.add_argument("--days-back", type=float, default=3.0, help="demo history starts this many days ago")
    args = parser.parse_args(argv)

    settings = config.load()
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Reap what a killed previous run left behind, before looking at which ports are free.
    for name, expect in (("worker.pid", "app.py"), ("simulator.pid", "simulat")):
        reap_pidfile(run_dir / name, expect)

    broker = TansuBroker(run_dir, port=None)
    redis = RedisServer(run_dir, port=None)
    reap_pidfile(broker.pidfile, "tansu")
    reap_pidfile(redis.pidfile, "redis-server")
    broker.port = _pick_port(_port_from_url(settings.app.broker, 9092), "the broker")
    redis.port = _pick_port(_port_from_url(settings.app.redis_url, 6379), "Redis")
    web_port = _pick_port(settings.app.web_port, "the worker's web server")

    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def _stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nstopping ...", flush=True)
        (run_dir / STACK_FILE).unlink(missing_ok=True)
        for name, proc in reversed(procs):
            stop(proc, timeout=15)
            (run_dir / f"{name}.pid").unlink(missing_ok=True)
        redis.stop()
        broker.stop()
        print("stopped.")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        print("parcelwatch: starting the embedded stack")
        broker.start()
        print(f"  broker   Tansu on {broker.bootstrap} (memory-only; log {broker.log_path})")
        redis.start()
        print(f"  redis    {redis.url} (log {redis.log_path})")
        demo_login = _demo_account(redis.url)
        data_dir = run_dir / "worker-data"
        # The memory-only broker just started empty: tables built against an older one are invalid.
        shutil.rmtree(data_dir, ignore_errors=True)
        env = {
            **os.environ,
            "PARCELWATCH_BROKER_URL": broker.url,
            "PARCELWATCH_BROKER_KIND": "embedded",
            "PARCELWATCH_REDIS_URL": redis.url,
            "PARCELWATCH_WEB_PORT": str(web_port),
            "PARCELWATCH_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        # A demo API token for machines (curl, scripts), every shop; people sign in with the demo account.
        env.setdefault("PARCELWATCH_TOKENS", "demo-token=*")
        worker_log = run_dir / "worker.log"

        def start_worker(log_mode: str) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                [sys.executable, "app.py", "worker", "-l", "info"],
                cwd=ROOT, env=env, stdout=worker_log.open(log_mode), stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
            (run_dir / "worker.pid").write_text(str(proc.pid))
            return proc

        worker = start_worker("wb")
        procs.append(("worker", worker))
        print(f"  worker   starting (log {worker_log}) ...", flush=True)
        _wait_healthy(web_port, worker, worker_log, timeout=120)
        print(f"  worker   ready on http://127.0.0.1:{web_port}")
        if not args.no_simulator:
            sim_log = run_dir / "simulator.log"
            sim_cmd = [
                sys.executable, "-m", "devtools.simulator",
                "--bootstrap", broker.bootstrap,
                "--parcels", str(args.parcels),
                "--days-back", str(args.days_back),
                # Batch records, as the ingest endpoints send them (delivery/batch_records.py).
                "--batch", "50",
            ]
            if args.rate is not None:
                sim_cmd += ["--rate", str(args.rate)]
            sim = subprocess.Popen(
                sim_cmd, cwd=ROOT, env=env, stdout=sim_log.open("wb"), stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
            procs.append(("simulator", sim))
            (run_dir / "simulator.pid").write_text(str(sim.pid))
            print(f"  traffic  simulator feeding {args.parcels} parcels (log {sim_log})")
        base = f"http://127.0.0.1:{web_port}"
        (run_dir / STACK_FILE).write_text(json.dumps(
            {"pid": os.getpid(), "broker": broker.url, "redis": redis.url, "web": base}))
        demo = env["PARCELWATCH_TOKENS"].split("=", 1)[0] if env["PARCELWATCH_TOKENS"].startswith("demo-token=") else None
        print()
        print(f"  queue page          {base}/queue   (open it in a browser; sign in as {demo_login[0]}, "
              f"password {demo_login[1]})")
        bearer = f"-H 'Authorization: Bearer {demo}' " if demo else ""
        print(f"  issue API (JSON)    curl {bearer}{base}/issues")
        print("  queue in terminal   .venv/bin/python app.py queue")
        print(f"  metrics             {base}/metrics")
        print(f"  health              {base}/healthz")
        print(f"  lane baselines      {base}/lanes")
        print("\nrunning; press Ctrl-C to stop everything.", flush=True)
        restarts: list[float] = []
        while True:
            for i, (name, proc) in enumerate(procs):
                if proc.poll() is None or (name == "simulator" and proc.returncode == 0):
                    continue
                print(f"{name} exited with code {proc.returncode}; last log lines:\n{_tail(run_dir / f'{name}.log')}")
                # A worker exits when a record it produced failed to send: started again, it goes on from its
                # last commit (as a production supervisor would start it). Not for ever: a worker that keeps
                # exiting has something else wrong.
                restarts = [t for t in restarts if time.monotonic() - t < WORKER_RESTART_WINDOW_SECONDS]
                if name != "worker" or proc.returncode == 0 or len(restarts) >= WORKER_RESTARTS:
                    return 1
                restarts.append(time.monotonic())
                print(f"  worker   starting again (log {worker_log}) ...", flush=True)
                procs[i] = (name, start_worker("ab"))
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop_all()


if __name__ == "__main__":
    sys.exit(main())
