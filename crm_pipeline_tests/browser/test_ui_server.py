"""The ``dagster dev`` stopper leaves nothing behind, even processes that ignore SIGTERM."""

import subprocess
import time

from crm_pipeline_tests.browser.ui_server import group_members, stop_group


def test_stop_group_kills_children_that_ignore_sigterm() -> None:
    proc = subprocess.Popen(
        ["bash", "-c", "trap '' TERM; sleep 300 & sleep 300 & wait"], start_new_session=True
    )
    deadline = time.monotonic() + 10
    while len(group_members(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(proc.pid)) == 3
    stop_group(proc, grace_s=0.5)
    assert group_members(proc.pid) == []
