"""The `aitrader` command: run a symbol, scan a watchlist, approve or reject a paused run, list history, replay."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api import backtest_cli, data_cli, ops_cli, scan_cli, serve_cli, worker_cli
from api.runs import Lifecycles, NotPending, RunNotFound, RunOutcome, make_request
from api.summary import render_history, render_outcome
from state import Settings
from state.sections import ApprovalResponse
from tools.market_data import MarketDataError
from tools.storage import StorageUnavailable, open_storage

EXIT_OK, EXIT_USAGE, EXIT_INFRA, EXIT_STATE = 0, 2, 3, 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aitrader", description="Run crypto trade lifecycles as LangGraph state machines.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one symbol through the whole lifecycle")
    run.add_argument("symbol", help="e.g. BTC/USDT")
    run.add_argument("--source", choices=["builtin", "files", "ccxt"], help="where candles come from (default: builtin, or files with --data-dir)")
    run.add_argument("--exchange", help="exchange id for ccxt and the candle store (default from settings: binance)")
    run.add_argument("--data-dir", help="freqtrade / Binance data directory (implies --source files)")
    run.add_argument("--scenario", help="built-in market: uptrend, downtrend, range, volatile, crash (default: the symbol's own)")
    run.add_argument("--approval", choices=["observe", "threshold", "always"], help="approval mode (default from settings)")
    run.add_argument("--timeframes", help="comma-separated, e.g. 5m,1h,4h (default from settings)")
    run.add_argument("--decision-timeframe", help="timeframe the strategies trade on (default 1h)")
    run.add_argument("--as-of", type=datetime.fromisoformat, help="decide at this past moment (ISO time, UTC)")
    run.add_argument("--thread-id", help="use this thread id instead of a new one")
    run.add_argument("--live", action="store_true", help="trade through the live ccxt broker (needs AITRADER_LIVE_TRADING=true and keys)")
    run.add_argument("--json", action="store_true", help="print the final state as one JSON document")

    for name, text in (("approve", "approve a run waiting at the approval interrupt"), ("reject", "reject a waiting run")):
        command = sub.add_parser(name, help=text)
        command.add_argument("thread_id")
        command.add_argument("--by", default="cli", help="who decides (recorded in the audit)")
        command.add_argument("--reason", default="", required=name == "reject")
        command.add_argument("--json", action="store_true")
        if name == "approve":
            command.add_argument("--quantity", type=float, help="approve a smaller size than proposed")

    history = sub.add_parser("history", help="list a run's checkpoints")
    history.add_argument("thread_id")
    history.add_argument("--json", action="store_true")

    data_cli.add_parser(sub)
    backtest_cli.add_parser(sub)
    ops_cli.add_parsers(sub)
    serve_cli.add_parser(sub)
    scan_cli.add_parser(sub)
    worker_cli.add_parser(sub)

    replay = sub.add_parser("replay", help="re-run a run from one of its checkpoints")
    replay.add_argument("thread_id")
    replay.add_argument("--checkpoint", required=True, help="checkpoint id from `aitrader history`")
    replay.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def emit(args: argparse.Namespace, outcome: RunOutcome) -> None:
    if args.json:
        print(json.dumps(outcome.document(), indent=2, default=str))
    else:
        print(render_outcome(outcome))


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    async with open_storage(settings) as storage:
        if args.command == "data":
            action = data_cli.download if args.data_command == "download" else data_cli.import_files
            print(data_cli.render(await action(args, settings, storage)))
            return EXIT_OK
        if args.command == "backtest":
            return await backtest_cli.run(args, settings, storage)
        runs = Lifecycles(settings, storage)
        try:
            return await _dispatch(args, runs)
        finally:
            await runs.hub.aclose()


async def _dispatch(args: argparse.Namespace, runs: Lifecycles) -> int:
    settings = runs.settings
    if args.command == "run":
        overrides: dict[str, Any] = {
            "source": args.source,
            "exchange": args.exchange,
            # Absolute, so a later approve or replay from another directory finds the same files.
            "data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
            "scenario": args.scenario,
            "approval_mode": args.approval,
            "decision_timeframe": args.decision_timeframe,
            "as_of": args.as_of,
            "timeframes": args.timeframes.split(",") if args.timeframes else None,
            "broker": "live" if args.live else None,
        }
        emit(args, await runs.start(make_request(settings, args.symbol, **overrides), thread_id=args.thread_id))
    elif args.command in ("approve", "reject"):
        action = "reject" if args.command == "reject" else ("modify" if getattr(args, "quantity", None) else "approve")
        response = ApprovalResponse(action=action, by=args.by, reason=args.reason, quantity=getattr(args, "quantity", None))
        emit(args, await runs.resume(args.thread_id, response))
    elif args.command == "history":
        infos = await runs.history(args.thread_id)
        print(json.dumps([i.model_dump() for i in infos], indent=2) if args.json else render_history(args.thread_id, infos))
    elif args.command == "replay":
        emit(args, await runs.replay(args.thread_id, args.checkpoint))
    elif args.command == "resume":
        emit(args, await runs.continue_run(args.thread_id))
    elif args.command in OPS_COMMANDS:
        return await OPS_COMMANDS[args.command](args, runs)
    return EXIT_OK


OPS_COMMANDS: dict[str, Callable[[argparse.Namespace, Lifecycles], Awaitable[int]]] = {
    "governor": ops_cli.governor_command,
    "audit": ops_cli.audit_command,
    "positions": ops_cli.positions_command,
    "approvals": ops_cli.approvals_command,
    "runs": ops_cli.runs_command,
    "scan": scan_cli.scan_command,
}


def run_command(action: Callable[[], Awaitable[int]]) -> int:
    try:
        return asyncio.run(action())
    except ValidationError as error:
        print(f"aitrader: invalid input: {'; '.join(e['msg'] for e in error.errors())}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:
        print(f"aitrader: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (RunNotFound, NotPending, LookupError) as error:
        print(f"aitrader: {error}", file=sys.stderr)
        return EXIT_STATE
    except (StorageUnavailable, MarketDataError) as error:
        print(f"aitrader: {error}", file=sys.stderr)
        return EXIT_INFRA


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"aitrader: bad setting: {'; '.join(str(e['loc'][0]) + ': ' + e['msg'] for e in error.errors())}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":  # uvicorn owns the event loop and the storage's lifetime
        return serve_cli.serve(args, settings)
    if args.command == "worker":  # taskiq's worker takes over the process
        return worker_cli.worker_command(args)
    return run_command(lambda: dispatch(args, settings))


if __name__ == "__main__":
    sys.exit(main())
