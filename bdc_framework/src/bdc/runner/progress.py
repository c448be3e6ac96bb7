"""What a sync shows while it runs: a live status line on a terminal, log lines otherwise, or JSON lines."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["Progress", "LiveProgress", "PlainProgress", "JsonProgress", "make_progress", "LogRecords",
           "capture_logs"]


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Receives run events; the base class ignores them all."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.tables_total = 0
        self.tables_done = 0
        self.rows = 0
        self.current: dict[str, list[int]] = {}  # table -> [done, total]
        self._thread_tables: dict[int, str] = {}  # thread running a table's build -> the table

    def table_of(self, record: logging.LogRecord) -> str | None:
        """The table a log record is about: by its logger (``bdc.build.<table>``, the build
        context's), else the table whose build runs in the thread that logged it, if known."""
        if record.name.startswith("bdc.build."):
            return record.name[len("bdc.build."):]
        return self._thread_tables.get(record.thread) if record.thread is not None else None

    def demo_started(self, name: str, description: str) -> None:
        """An offline demo source was started (``bdc-sync --demo``). Quiet (this base class): a
        line still, so which sources a run used stays on record."""
        with self.lock:
            self.stream.write(_demo_line(name, description) + "\n")

    def log(self, record: logging.LogRecord, table: str | None) -> None:
        """A warning or error was logged during the run. Quiet (this base class): a record of a
        table's build is dropped (the run report has the table's outcome and counters); one of
        the run itself (taking over an expired lock, a recovery) is still a line, as errors are."""
        if table is None:
            with self.lock:
                self.stream.write(_log_line(record) + "\n")

    def run_started(self, run_id: str, cache: str, tables: list[str]) -> None:
        """A run begins."""
        self.tables_total = len(tables)

    def table_started(self, name: str) -> None:
        """A table's build begins."""
        with self.lock:
            self.current[name] = [0, 0]
            self._thread_tables[threading.get_ident()] = name

    def partitions_planned(self, name: str, total: int) -> None:
        """A partitioned table will build ``total`` partitions."""
        with self.lock:
            self.current.setdefault(name, [0, 0])[1] = total

    def partition_done(self, name: str, rows: int) -> None:
        """One partition was written."""
        with self.lock:
            self.current.setdefault(name, [0, 0])[0] += 1
            self.rows += rows

    def retry(self, name: str, attempt: int, error: BaseException) -> None:
        """A transient error is being retried."""

    def table_finished(self, report: Any) -> None:
        """A table is done (ok, unchanged, failed or skipped)."""
        with self.lock:
            self.current.pop(report.name, None)
            for ident in [i for i, name in self._thread_tables.items() if name == report.name]:
                del self._thread_tables[ident]
            self.tables_done += 1
            if not report.partitions:
                self.rows += report.rows

    def run_finished(self, report: Any) -> None:
        """The run is over."""


class PlainProgress(Progress):
    """One log line per event worth a line (for logs and pipes)."""

    def __init__(self, stream: IO[str] | None = None, every: float = 5.0):
        super().__init__(stream)
        self.every = every
        self._last: dict[str, float] = {}

    def _line(self, text: str) -> None:
        self.stream.write(f"[{_clock(time.monotonic() - self.start)}] {text}\n")
        self.stream.flush()

    def demo_started(self, name: str, description: str) -> None:
        """Log the demo source."""
        self._line(_demo_line(name, description))

    def log(self, record: logging.LogRecord, table: str | None) -> None:
        """Log the record as a line (level, logger, message)."""
        with self.lock:
            self._line(_log_line(record))

    def run_started(self, run_id: str, cache: str, tables: list[str]) -> None:
        """Log the run's tables."""
        super().run_started(run_id, cache, tables)
        self._line(f"sync {run_id} on {cache}: {len(tables)} tables")

    def table_started(self, name: str) -> None:
        """Log the start."""
        super().table_started(name)
        self._line(f"{name}: building")

    def partition_done(self, name: str, rows: int) -> None:
        """Log partition progress at most every few seconds."""
        super().partition_done(name, rows)
        now = time.monotonic()
        if now - self._last.get(name, 0) >= self.every:
            self._last[name] = now
            done, total = self.current.get(name, [0, 0])
            self._line(f"{name}: {done}/{total} partitions")

    def retry(self, name: str, attempt: int, error: BaseException) -> None:
        """Log the retry."""
        self._line(f"{name}: retry {attempt} after {type(error).__name__}: {error}")

    def table_finished(self, report: Any) -> None:
        """Log the outcome."""
        super().table_finished(report)
        extra = f", {report.partitions_built}/{report.partitions} partitions built" if report.partitions else ""
        err = f": {report.error}" if report.error else ""
        self._line(f"{report.name}: {report.status} ({report.rows} rows{extra}, {report.seconds:.2f} s){err}")

    def run_finished(self, report: Any) -> None:
        """Log the end."""
        self._line(f"sync {report.run_id}: {report.status} in {report.seconds:.1f} s")


class JsonProgress(Progress):
    """Structured log lines: one JSON object per event."""

    def _emit(self, event: str, **fields: Any) -> None:
        fields = {"event": event, "elapsed": round(time.monotonic() - self.start, 3), **fields}
        with self.lock:
            self.stream.write(json.dumps(fields, default=str) + "\n")
            self.stream.flush()

    def demo_started(self, name: str, description: str) -> None:
        """Emit demo_started."""
        self._emit("demo_started", demo=name, description=description)

    def log(self, record: logging.LogRecord, table: str | None) -> None:
        """Emit ``log``: level, logger name, table (``None`` when not known) and message."""
        self._emit("log", level=record.levelname.lower(), logger=record.name, table=table, message=_message(record))

    def error(self, message: str, exit_status: int) -> None:
        """Emit ``error``: the run could not start (or stopped outside any table), and the
        command's exit status."""
        self._emit("error", message=message, exit_status=exit_status)

    def run_started(self, run_id: str, cache: str, tables: list[str]) -> None:
        """Emit run_started."""
        super().run_started(run_id, cache, tables)
        self._emit("run_started", run_id=run_id, cache=cache, tables=tables)

    def table_started(self, name: str) -> None:
        """Emit table_started."""
        super().table_started(name)
        self._emit("table_started", table=name)

    def partitions_planned(self, name: str, total: int) -> None:
        """Emit partitions_planned."""
        super().partitions_planned(name, total)
        self._emit("partitions_planned", table=name, partitions=total)

    def retry(self, name: str, attempt: int, error: BaseException) -> None:
        """Emit retry."""
        self._emit("retry", table=name, attempt=attempt, error=f"{type(error).__name__}: {error}")

    def table_finished(self, report: Any) -> None:
        """Emit table_finished with the table's report."""
        super().table_finished(report)
        self._emit("table_finished", **{k: v for k, v in report.to_dict().items() if k != "spans"})

    def run_finished(self, report: Any) -> None:
        """Emit run_finished."""
        self._emit("run_finished", run_id=report.run_id, status=report.status, seconds=report.seconds)


class LiveProgress(Progress):
    """A status line redrawn in place (at most 10 times a second) on a terminal."""

    def __init__(self, stream: IO[str] | None = None):
        super().__init__(stream)
        self._drawn = 0.0
        self._rate_mark = (time.monotonic(), 0)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        elapsed = now - self.start
        parts = [f"[{self.tables_done}/{self.tables_total} tables]"]
        eta = ""
        for name, (done, total) in list(self.current.items())[:3]:
            parts.append(f"{name} {done}/{total}" if total else f"{name}")
            if total and done:
                eta = f" · ETA {_clock(elapsed / done * (total - done))}" if len(self.current) == 1 else eta
        rate = self.rows / elapsed if elapsed > 0 else 0
        text = f"{' · '.join(parts)} · {self.rows:,} rows · {rate:,.0f} rows/s · {_clock(elapsed)}{eta}"
        self.stream.write("\r\x1b[2K" + text[:200])
        self.stream.flush()

    def demo_started(self, name: str, description: str) -> None:
        """Print the demo source above the status line."""
        self._above(_demo_line(name, description))

    def log(self, record: logging.LogRecord, table: str | None) -> None:
        """Print the record above the status line."""
        self._above(_log_line(record))

    def _above(self, text: str) -> None:
        with self.lock:
            self.stream.write(f"\r\x1b[2K{text}\n")
            if self.tables_total:
                self._draw(force=True)
            else:
                self.stream.flush()

    def table_started(self, name: str) -> None:
        """Redraw."""
        super().table_started(name)
        with self.lock:
            self._draw()

    def partition_done(self, name: str, rows: int) -> None:
        """Redraw (throttled)."""
        super().partition_done(name, rows)
        with self.lock:
            self._draw()

    def table_finished(self, report: Any) -> None:
        """Print the finished table above the status line."""
        super().table_finished(report)
        with self.lock:
            err = f": {report.error}" if report.error else ""
            self.stream.write(f"\r\x1b[2K{report.status:9} {report.name} ({report.rows:,} rows, {report.seconds:.1f} s){err}\n")
            self._draw(force=True)

    def run_finished(self, report: Any) -> None:
        """Clear the status line."""
        with self.lock:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def _message(record: logging.LogRecord) -> str:
    """The record's message, with its exception's traceback (if any) after it."""
    text = record.getMessage().rstrip("\n")  # a captured warning ends with one
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


def _log_line(record: logging.LogRecord) -> str:
    """A log record as a display's line: ``level: logger: message``."""
    return f"{record.levelname.lower()}: {record.name}: {_message(record)}"


def _demo_line(name: str, description: str) -> str:
    """A started demo source as a display's line."""
    return f"demo: starting {name} ({description})"


class LogRecords(logging.Handler):
    """Hands the log records of a run to its :class:`Progress` (see :func:`capture_logs`)."""

    def __init__(self, progress: Progress, level: int = logging.WARNING):
        super().__init__(level)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        """Pass the record on (a failure to show it must not fail the run)."""
        try:
            self.progress.log(record, self.progress.table_of(record))
        except Exception:  # pragma: no cover - a closed stream, say
            self.handleError(record)


@contextlib.contextmanager
def capture_logs(progress: Progress, level: int = logging.WARNING) -> Iterator[LogRecords]:
    """Route the process's log records of ``level`` and above (plugins' loggers included) and
    Python warnings to ``progress`` while the block runs, instead of the bare lines of Python's
    last-resort handler: JSON events for :class:`JsonProgress`, lines for the live and plain
    displays, when quiet only the run's own (see :meth:`Progress.log`). For a command line's run (it
    changes the root logger)."""
    handler = LogRecords(progress, level)
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        root.setLevel(previous_level)
        root.removeHandler(handler)


def make_progress(mode: str | Progress | None = "auto", stream: IO[str] | None = None) -> Progress:
    """``auto`` (live on a terminal, plain otherwise), ``live``, ``plain``, ``json`` or ``none``."""
    if isinstance(mode, Progress):
        return mode
    stream = stream or sys.stderr
    if mode in (None, "none", "quiet"):
        return Progress(stream)
    if mode == "auto":
        mode = "live" if getattr(stream, "isatty", lambda: False)() else "plain"
    return {"live": LiveProgress, "plain": PlainProgress, "json": JsonProgress}[mode](stream)
