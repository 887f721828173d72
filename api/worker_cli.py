"""`aitrader worker`: a taskiq worker deciding scan symbols sent over RabbitMQ (api/scan_distributed.py).

Kept apart from the broker module so every other command starts without importing taskiq and aio-pika.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn


def add_parser(sub: Any) -> None:
    worker = sub.add_parser("worker", help="decide scan symbols sent over RabbitMQ (AITRADER_BROKER_URL, AITRADER_SCAN_QUEUE)")
    worker.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per core)")
    worker.add_argument("--max-async-tasks", type=int, default=2, help="symbols each process decides at once (default 2)")
    worker.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def worker_command(args: argparse.Namespace) -> NoReturn:
    """Replace this process with `taskiq worker`: its processes import this module afresh (no inherited loop or pool)."""
    if args.workers < 1 or args.max_async_tasks < 1:
        print("aitrader: --workers and --max-async-tasks must be at least 1", file=sys.stderr)
        sys.exit(2)
    # Prefetch what a process can run at once, and no more: a killed process holds no waiting messages.
    os.environ.setdefault("AITRADER_SCAN_PREFETCH", str(args.max_async_tasks))
    argv = [
        sys.executable, "-m", "taskiq", "worker", "api.scan_distributed:broker",
        "--workers", str(args.workers), "--max-async-tasks", str(args.max_async_tasks),
        "--max-prefetch", "0", "--ack-type", "when_saved", "--log-level", args.log_level,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
