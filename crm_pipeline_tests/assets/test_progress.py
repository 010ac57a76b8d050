"""Progress lines of long per-customer steps: enough to follow, never a flood."""

from types import SimpleNamespace

from crm_pipeline.assets.customers import PROGRESS_EVERY_S, log_progress


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: object) -> None:
        self.lines.append(message % args)


def test_first_last_and_one_line_per_interval():
    log, now = Log(), [0.0]
    report = log_progress(SimpleNamespace(log=log), "explanations", clock=lambda: now[0])
    for done in range(1, 301):  # 300 customers, one every 0.1 s: 30 s in all
        now[0] = done * 0.1
        report(done, 300)
    assert PROGRESS_EVERY_S == 10.0
    # the first, one every 10 s (at 10.1 s and 20.1 s), and the last
    assert [line.split()[1] for line in log.lines] == ["1/300", "101/300", "201/300", "300/300"]
    assert log.lines[-1] == "explanations: 300/300 customers written"
