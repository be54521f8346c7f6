"""`python -m bench`: exit 0 (goals met or not), 1 for a failed smoke run, 2 when set-up fails."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from bench.load import LoadFailed
from bench.options import parse_options
from bench.session import run
from bench.tools import SetupError


def stop_on_sigterm(signal_number: int, frame: FrameType | None) -> None:
    # An exception, so every `finally` runs: servers stopped, database dropped, keys deleted.
    raise SystemExit(128 + signal_number)


def main() -> None:
    options = parse_options()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        code = run(options)
    except (SetupError, LoadFailed, OSError) as error:
        print(f"bench: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped, database dropped", file=sys.stderr)
        code = 130
    sys.exit(code)
