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
    for done in range(1, 41):  # 40 customers, one every 0.5 s: 20 s in all
        now[0] = done * 0.5
        report(done, 40)
    assert PROGRESS_EVERY_S == 10.0
    # the first (0.5 s), the next one 10 s later (10.5 s), and the last (20 s)
    assert [line.split()[1] for line in log.lines] == ["1/40", "21/40", "40/40"]
    assert log.lines[-1] == "explanations: 40/40 customers written"
