"""Train and score one of MSDA's deep models (``msda`` 1.10.0, the CRM paper's library) on given
windows, inside MSDA's own virtual environment; ``deep_training.py --parts msda`` runs it.

MSDA's ``Anamoly.compute`` trains (Adam, lr 1e-5, batches of 32, MSE) and then scores every
window in one pass, printing only ``Training Loss: … - Epoch: k``. Its source is not changed:
its train step is wrapped to time the epochs and to tell training from scoring.

    <msda venv>/bin/python benchmarks/msda_runner.py deepcnn windows.npy 2

``windows.npy`` holds (n, span, 7) float32 windows; the first 10 rows of each are the input,
row 11 the next event (the CNN's target). Last line: JSON with the epoch seconds, the epoch
losses, the scoring seconds, the process's peak memory, and its memory before and after loading the windows.
"""

import contextlib
import io
import json
import re
import sys
import time

import numpy as np
import torch
from measure import peak_rss_mb  # the benchmarks' helper: plain standard library
from msda.anamoly import Anamoly

LOOKBACK = 10
KERNEL = 2  # MSDA's DeepCNN hard-codes Linear(80, 40): with 7 columns only kernel 2 fits


class EpochLines(io.TextIOBase):
    """Keeps MSDA's printed ``Training Loss`` values (and echoes nothing else)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def write(self, text: str) -> int:
        self.losses += [float(v) for v in re.findall(r"Training Loss: (\S+) - Epoch", text)]
        return len(text)


def main() -> None:
    kind, path, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    before_data = peak_rss_mb()  # the interpreter with torch and msda loaded
    windows = np.load(path)
    base = peak_rss_mb()  # … and the windows
    x, y = windows[:, :LOOKBACK], windows[:, LOOKBACK] if windows.shape[1] > LOOKBACK else None
    steps_per_epoch = -(-len(x) // 32)
    stamps: list[float] = []
    make_step = Anamoly.make_train_step

    def timed_make_step(model, loss_fn, optimizer):  # noqa: ANN001, ANN202 - MSDA's own signature
        step = make_step(model, loss_fn, optimizer)

        def timed(xb, yb):  # noqa: ANN001, ANN202
            if not stamps:
                stamps.append(time.perf_counter())
            loss = step(xb, yb)
            stamps.append(time.perf_counter())
            return loss

        return timed

    Anamoly.make_train_step = timed_make_step
    torch.manual_seed(0)
    lines = EpochLines()
    with contextlib.redirect_stdout(lines):
        Anamoly.compute(
            x, y if y is not None else x[:, -1], LOOKBACK_SIZE=LOOKBACK,
            num_of_numerical_features=x.shape[2], epocs=epochs, MODEL_SELECTED=kind, KERNEL_SIZE=KERNEL,
        )  # fmt: skip
    finished = time.perf_counter()
    ends = [stamps[0]] + [stamps[min(e * steps_per_epoch, len(stamps) - 1)] for e in range(1, epochs + 1)]
    print(
        json.dumps(
            {
                "windows": len(x),
                "epoch_s": [b - a for a, b in zip(ends, ends[1:], strict=False)],
                "losses": lines.losses,
                "score_s": finished - stamps[-1],
                "peak_mb": peak_rss_mb(),
                "base_mb": base,
                "before_data_mb": before_data,
            }
        )
    )


if __name__ == "__main__":
    main()
