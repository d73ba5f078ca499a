"""parcelwatch: the Faust app and its command line.

    python app.py worker -l info      the stream worker (agents, timer, web server on :6066)
    python app.py simulate ...        demo traffic from the simulator into the broker
    python app.py replay EVENTS.jsonl [--until T] [--out ISSUES.jsonl]
    python app.py queue ...           today's problem-parcel queue in the terminal, or as CSV

Importing ``agents`` builds the app from the validated configuration and registers every agent, table,
timer and web view on it.
"""

from __future__ import annotations

import sys

from faust.cli import argument, option

import agents.orders
import agents.parcels
import agents.sinks
import agents.web  # noqa: F401 - importing registers the views
from agents import app, settings


@app.command(
    argument("events"),
    option("--until", default=None, help="Stop the clock at this time (ISO 8601 with offset)."),
    option("--out", default=None, help="Write every issue as JSON Lines to this file."),
)
async def replay(self: object, events: str, until: str | None, out: str | None) -> None:
    """Replay a JSON Lines file of events in event time through the live detectors."""
    from replay import main_replay

    code = main_replay(settings, events, until, out)
    if code:
        sys.exit(code)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker" and settings.app.broker_kind == "embedded":
        # The embedded broker keeps nothing across its restarts: local tables built against an older
        # broker lifetime would disagree with the (now empty) changelogs.
        from pathlib import Path

        from embedded.tansu_compat import discard_stale_tables

        bootstrap = settings.app.broker.split(";")[0].removeprefix("kafka://")
        discard_stale_tables(bootstrap, Path(settings.app.data_dir))
    app.main()


if __name__ == "__main__":
    main()
