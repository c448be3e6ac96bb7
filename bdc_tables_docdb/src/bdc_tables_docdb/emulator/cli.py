"""``bdc-docdb-emulator``: serve a local DocDB REST emulator until Ctrl-C.

Examples::

    bdc-docdb-emulator --demo --port 8765
    bdc-docdb-emulator --records dump.jsonl.gz --records extra.json --page-cap 100
    BDC_DOCDB_URL=http://127.0.0.1:8765 python my_notebook.py
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser"]

_DEMO_MODULE = "bdc_tables_docdb.demo.sample"


def _non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _rate(text: str) -> float:
    """argparse type: a probability within [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bdc-docdb-emulator``."""
    parser = argparse.ArgumentParser(
        prog="bdc-docdb-emulator",
        description=(
            "Serve a local DocDB REST emulator (find, aggregate, count_documents) on 127.0.0.1. "
            "Point bdc at it with BDC_DOCDB_URL=<printed url>."
        ),
    )
    parser.add_argument(
        "--records",
        metavar="FILE",
        action="append",
        default=[],
        help="records to load: JSON array, JSON object, JSON lines, optionally .gz, or a "
        "directory of such files (repeatable)",
    )
    parser.add_argument("--demo", action="store_true", help="load the shipped demo sample")
    parser.add_argument(
        "--port", type=_non_negative_int, default=0, help="TCP port (0 = any free port)"
    )
    parser.add_argument(
        "--api-version", default="v2", help="API version the records are loaded into (default v2)"
    )
    parser.add_argument(
        "--page-cap",
        type=_non_negative_int,
        default=500,
        help="most records per find response (0 = no cap)",
    )
    parser.add_argument(
        "--max-payload-bytes",
        type=_non_negative_int,
        default=None,
        help="byte cap of a response body, like the API gateway's (default: no cap)",
    )
    parser.add_argument(
        "--latency-ms", type=_non_negative_float, default=0.0, help="delay added to every request"
    )
    faults = parser.add_argument_group("fault injection (probabilities per request)")
    faults.add_argument("--error-rate-5xx", type=_rate, default=0.0, help="answer 500/502/503/504")
    faults.add_argument("--error-rate-429", type=_rate, default=0.0, help="answer 429 Retry-After")
    faults.add_argument("--drop-rate", type=_rate, default=0.0, help="close without answering")
    faults.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    faults.add_argument(
        "--keyed-faults",
        action="store_true",
        help="draw each request's fault from the request itself (reproducible under concurrency)",
    )
    return parser


def _load_demo_records() -> list[dict[str, Any]]:
    """Records of the shipped demo sample; raises ``RuntimeError`` when it is not installed."""
    import importlib

    try:
        module = importlib.import_module(_DEMO_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name and _DEMO_MODULE.startswith(exc.name):
            raise RuntimeError(
                f"--demo needs the module {_DEMO_MODULE}, which is not installed in this "
                "environment; pass --records FILE instead"
            ) from exc
        raise
    loader = getattr(module, "load_sample_records", None)
    if not callable(loader):
        raise RuntimeError(f"--demo: {_DEMO_MODULE} has no load_sample_records() function")
    return list(loader())


def _wait_forever() -> None:
    """Block until interrupted (Ctrl-C raises ``KeyboardInterrupt``)."""
    while True:
        time.sleep(3600)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: stop like Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bdc-docdb-emulator``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.error_rate_5xx + args.error_rate_429 + args.drop_rate > 1.0:
        parser.error("--error-rate-5xx, --error-rate-429 and --drop-rate must sum to at most 1")

    from .faults import FaultConfig
    from .server import DocDBEmulator, read_records_file

    try:
        emulator = DocDBEmulator(
            version=args.api_version,
            page_cap=args.page_cap or None,
            max_payload_bytes=args.max_payload_bytes or None,
            latency_ms=args.latency_ms,
            faults=FaultConfig(
                error_5xx_rate=args.error_rate_5xx,
                error_429_rate=args.error_rate_429,
                drop_rate=args.drop_rate,
                seed=args.seed,
                keyed=args.keyed_faults,
            ),
            port=args.port,
        )
        if args.demo:
            emulator.load(_load_demo_records())
        for path in args.records:
            emulator.load(read_records_file(path))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        print(f"bdc-docdb-emulator: error: {exc}", file=sys.stderr)
        return 2

    try:
        emulator.start()
    except OSError as exc:
        print(
            f"bdc-docdb-emulator: error: cannot listen on port {args.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        count = emulator.count()
        print(
            f"DocDB emulator serving {count} records ({args.api_version}) at {emulator.url}",
            flush=True,
        )
        print(f"  export BDC_DOCDB_URL={emulator.url}   # Ctrl-C to stop", flush=True)
        _wait_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
