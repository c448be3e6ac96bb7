"""The threads executor's build threads on one core (:mod:`bdc.runner.pinning`).

Real threads and the real ``sched_setaffinity``: what each item sees, what the pool's threads
and the threads a build starts are left with, the measuring's decisions, and that a sync
publishes the same bytes with the build threads on one core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bdc.errors import BdcError
from bdc.runner import executor_options, sync
from bdc.runner.cli import main as bdc_sync
from bdc.runner.executors import ThreadExecutor
from bdc.runner.pinning import CorePinning

CORES = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
needs_cores = pytest.mark.skipif(len(CORES) < 2 or not os.path.isdir("/proc/self/task"),
                                 reason="needs Linux and at least two cores")


def affinity(tid: int) -> frozenset[int]:
    """The cores a thread of this process may run on."""
    return frozenset(os.sched_getaffinity(tid))


@needs_cores
def test_on_runs_every_item_on_one_core_and_gives_every_core_back_after() -> None:
    seen: list[frozenset[int]] = []
    started: list[int] = []
    release = threading.Event()

    def item(i: int) -> int:
        seen.append(affinity(0))
        if i == 0:  # a build that starts a thread: it inherits its starter's core
            ready = threading.Event()

            def helper() -> None:
                started.append(threading.get_native_id())
                ready.set()
                release.wait(10)

            threading.Thread(target=helper, daemon=True).start()
            ready.wait(5)
        return i

    with ThreadExecutor(workers=3, pinning="on") as pool:
        results = dict(pool.map_unordered(item, range(30)))
        assert results == {i: i for i in range(30)}
        assert len(seen) == 30 and len(set(seen)) == 1 and len(seen[0]) == 1 and seen[0] < CORES
        # after the map: the helper a build started, and the pool's own threads, on every core
        assert affinity(started[0]) == CORES
        workers = [t.native_id for t in threading.enumerate() if t.name.startswith("bdc-build")]
        assert workers and all(affinity(tid) == CORES for tid in workers)
    release.set()
    assert affinity(0) == CORES  # the caller's thread was never moved


@needs_cores
@pytest.mark.parametrize("mode", ["off", "auto"])
def test_off_and_a_short_auto_map_leave_the_threads_on_every_core(mode: str) -> None:
    seen: list[frozenset[int]] = []
    with ThreadExecutor(workers=2, pinning=mode) as pool:
        list(pool.map_unordered(lambda i: seen.append(affinity(0)), range(20)))
        assert pool.pinning.decisions == []  # auto: a map shorter than the warm-up is not measured
    assert set(seen) == {CORES}


@needs_cores
def test_auto_keeps_one_core_only_when_it_measured_faster_and_measures_again() -> None:
    pin = CorePinning("auto", workers=1)
    assert pin.enabled and not pin.pinned
    pin._close_window(100.0, 0.0)  # free threads: 100 items/s -> now measure one core
    assert pin.pinned
    pin._close_window(130.0, 1.0)  # one core 30 % faster: kept
    assert pin.pinned
    for k in range(pin.keep_windows - 1):
        pin._close_window(130.0, 2.0 + k)
        assert pin.pinned
    pin._close_window(130.0, 20.0)  # kept long enough: measure free threads again
    assert not pin.pinned
    pin._close_window(100.0, 21.0)
    pin._close_window(101.0, 22.0)  # one core no faster (within the margin): free threads
    assert not pin.pinned
    assert [m["measured"] for m in pin.measures()] == ["free", "one core", "kept", "free", "one core"]
    assert [m["one_core_after"] for m in pin.measures()] == [True, True, False, True, False]


@needs_cores
def test_one_core_as_fast_within_the_noise_is_kept_for_clearly_less_cpu() -> None:
    pin = CorePinning("auto", workers=1)
    pin._close_window(100.0, 0.0, 0.010)
    pin._close_window(98.0, 0.0, 0.007)  # 2 % slower (noise), 30 % less CPU per item: one core
    assert pin.pinned
    pin = CorePinning("auto", workers=1)
    pin._close_window(100.0, 0.0, 0.010)
    pin._close_window(98.0, 0.0, 0.0095)  # as slow, about the same CPU: free threads
    assert not pin.pinned
    pin = CorePinning("auto", workers=1)
    pin._close_window(100.0, 0.0, 0.010)
    pin._close_window(80.0, 0.0, 0.005)  # half the CPU, but a fifth slower: free threads
    assert not pin.pinned
    assert pin.measures()[1] == {"measured": "one core", "items_per_s": 80.0, "cpu_ms_per_item": 5.0,
                                 "one_core_after": False}


@needs_cores
def test_a_choice_measured_again_and_confirmed_is_kept_longer() -> None:
    pin = CorePinning("auto", workers=1)
    lengths = []
    for _cycle in range(4):
        pin._close_window(100.0, 0.0)
        pin._close_window(150.0, 0.0)
        kept = 0
        while pin.pinned:
            pin._close_window(150.0, 0.0)
            kept += 1
        lengths.append(kept)
    assert lengths == [pin.keep_windows, 2 * pin.keep_windows, 4 * pin.keep_windows, 8 * pin.keep_windows]


@needs_cores
def test_worker_threads_follow_a_decision_at_their_next_item() -> None:
    pin = CorePinning("auto", workers=1)
    seen = []

    def run() -> None:
        pin.before_item()
        seen.append(affinity(0))
        pin._close_window(100.0, 0.0)  # -> one core
        pin.before_item()
        seen.append(affinity(0))
        pin.leave()
        seen.append(affinity(0))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen[0] == CORES and len(seen[1]) == 1 and seen[2] == CORES


def test_pinning_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="expected one of auto, on, off"):
        CorePinning("sometimes")
    with pytest.raises(BdcError, match="expected one of auto, on, off"):
        executor_options("threads", pin_threads="sometimes")
    with pytest.raises(BdcError, match="applies to the threads executor, not 'processes'"):
        executor_options("processes", pin_threads="on")
    assert executor_options("threads", pin_threads="off") == {"pinning": "off"}
    assert executor_options("threads") == {}


def test_bdc_sync_refuses_pin_threads_with_another_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = bdc_sync(["--cache", (tmp_path / "c").as_uri(), "--executor", "processes", "--pin-threads", "on",
                     "--dry-run"])
    assert code == 2
    assert "pin_threads applies to the threads executor" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    with pytest.raises(SystemExit) as exc:
        bdc_sync(["--pin-threads", "always"])
    assert exc.value.code == 2


def test_a_single_core_or_off_never_moves_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not CorePinning("off").enabled and not CorePinning("off").pinned
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        one = CorePinning("on")
        assert not one.enabled and not one.pinned
    calls = []
    monkeypatch.setattr(CorePinning, "_set", staticmethod(lambda tid, cores: calls.append(cores)))
    pin = CorePinning("off")
    pin.before_item()
    pin.after_item()
    pin.leave()
    pin.finish(idle=True)
    assert calls == [] and pin.measures() == []


@needs_cores
def test_a_syncs_report_lists_what_its_build_threads_measured(tmp_path: Path, bdc_plugin: Callable[..., str]) -> None:
    import json

    import syncplugin
    from bdc.cache import Cache

    source = syncplugin.make_source(tmp_path / "source", syncplugin.default_subjects(40))
    bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-pin", distribution="bdc-test-sync")
    pool = ThreadExecutor(workers=2)
    pool.pinning.warmup_s = pool.pinning.window_s = pool.pinning.settle_s = 0.0  # measure every item
    pool.pinning.min_items = 1
    cache = Cache((tmp_path / "cache").as_uri())
    with pool:
        report = sync(cache, executor=pool, only=["sync_sessions"])
    assert report.ok, report.summary()
    assert report.pinning and report.pinning[0]["measured"] == "free"
    assert {m["measured"] for m in report.pinning} <= {"free", "one core", "kept"}
    assert all(m["items_per_s"] > 0 and m["cpu_ms_per_item"] >= 0 for m in report.pinning)
    stored = json.loads(cache.backend.read_bytes(f"{cache.layout.version_folder}/_runs/{report.run_id}.json"))
    assert stored["pinning"] == report.pinning
    assert affinity(0) == CORES
