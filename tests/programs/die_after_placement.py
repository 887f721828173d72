"""`aitrader` in a process that is killed (SIGKILL) right after the broker stored a bracket.

The kill lands between placement and the execute node's checkpoint: the order
exists in the database, the run's state does not know about it yet. This is
the crash the idempotency guarantee is about, produced for real rather than
simulated: the process dies and nothing of it runs afterwards.
"""

from __future__ import annotations

import os
import signal
import sys

from state.portfolio import Position
from tools.brokers.base import BracketRequest
from tools.brokers.paper import PaperBroker

_place = PaperBroker.place_bracket


async def _place_then_die(self: PaperBroker, request: BracketRequest) -> Position:
    position = await _place(self, request)
    print(f"placed {position.bracket_id}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    return position


PaperBroker.place_bracket = _place_then_die  # type: ignore[method-assign]

if __name__ == "__main__":
    from api.cli import main

    sys.exit(main(sys.argv[1:]))
