"""The directory watcher with a real watchdog observer: other files in the folder do not reach
the debounce; a served file's saves (in place, by rename, removal) do."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from addons.watching import DebouncedWatch


async def _watching(directory: Path, accept, body) -> tuple[DebouncedWatch, list[float]]:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    watch = DebouncedWatch(loop, directory, accept, lambda: fired.append(loop.time()), delay=0.05)
    watch.start()
    try:
        await body(watch, fired)
    finally:
        watch.stop()
    return watch, fired


async def _settle(seconds: float = 0.4) -> None:
    await asyncio.sleep(seconds)


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "the watcher did not call back"
        await asyncio.sleep(0.02)


def test_other_files_in_the_folder_do_not_reach_the_watcher(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text("port: 1\n")

    async def body(watch: DebouncedWatch, fired: list[float]) -> None:
        await _settle()
        # A benchmark writing its output, a log kept open, SQLite beside config.yaml.
        for _ in range(2000):
            with open(tmp_path / "bench.out", "a") as f:
                f.write("x\n")
        with open(tmp_path / "usage.db-wal", "ab") as f:
            for _ in range(2000):
                f.write(b"page")
                f.flush()
        (tmp_path / "config.yaml.bak").write_text("x")
        os.replace(tmp_path / "config.yaml.bak", tmp_path / "config.old")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "config.yaml").write_text("nested, not served")
        await _settle()
        assert watch.served_events == 0
        assert fired == []

        # An edit saved in place, then one saved by rename, then a removal: each is seen.
        config.write_text("port: 2\n")
        await _until(lambda: len(fired) == 1)
        tmp = tmp_path / "config.yaml.tmp"
        tmp.write_text("port: 3\n")
        os.replace(tmp, config)
        await _until(lambda: len(fired) == 2)
        config.unlink()
        await _until(lambda: len(fired) == 3)

    asyncio.run(_watching(tmp_path, "config.yaml".__eq__, body))


def test_a_burst_of_saves_is_one_callback(tmp_path: Path):
    async def body(watch: DebouncedWatch, fired: list[float]) -> None:
        await _settle()
        for i in range(20):
            (tmp_path / f"token-{i}.json").write_text("{}")
        (tmp_path / "dir.json").mkdir()  # reported too: the store says why it cannot be used
        await _until(lambda: len(fired) == 1)
        await _settle()
        assert len(fired) == 1
        assert watch.served_events >= 21

    asyncio.run(_watching(tmp_path, lambda name: name.endswith(".json"), body))
