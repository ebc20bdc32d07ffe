"""The `/debug/` page in a real headless browser (Debian's chromium): it draws the workers,
the task-count chart and the task tree from the service's own views, with no other request.

`scripts/system-deps` installs chromium; without it this test fails, saying so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from service import WorkerContext, worker
from service.testing import running_service

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Let the page's script run its first refresh (its fetches and timers) before the dump.
    "--virtual-time-budget=5000",
)


@worker(grace=5)
async def pool(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(2_000):
            nursery.start_soon(trio.sleep_forever)
        task_status.started()
        await ctx.stopping.wait()
        nursery.cancel_scope.cancel(reason="soft stop")


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run scripts/system-deps (apt-get install chromium)")
    return path


async def test_the_debug_page_draws_workers_chart_and_tree(tmp_path: Path) -> None:
    browser = chromium()
    async with running_service(pool) as running:
        await running.service.supervisor.ready.wait()
        host, port = running.address
        with trio.fail_after(60):
            done = await trio.run_process(
                [
                    browser,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={tmp_path / 'profile'}",
                    "--dump-dom",
                    f"http://{host}:{port}/debug/",
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    dom = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert 'data-loaded="true"' in dom, dom[-3000:]
    assert 'class="pill ready">ready<' in dom
    assert '<tr data-worker="pool"><td>pool</td><td class="state-running">running</td>' in dom
    assert '<polyline class="series" points="' in dom
    assert "×2,000 trio.sleep_forever [worker pool]" in dom
