"""Deep-model training speed: the paper's 30 epochs of both models on demo-sized CRM events,
and per-customer training of many customers batched against a loop of the same model.

Data: the demo generator at a larger size (``--customers-per-tenant``, 22 tenants: 1,012
customers), taken through the real pipeline (SQLite tenants -> extraction -> encoded
crm_events) once and cached under ``--cache``; the epochs part takes the first customers up to
``--epoch-events`` (the CRM paper's ~170k records). Both parts call
``crm_pipeline.detectors.deep`` as the pipeline does:

* ``epochs``: one global model of each kind on every customer's windows (look-back 10 over the
  7 encoded columns, batches of 1024), the paper's 30 epochs; seconds and final loss printed
  beside the paper's GPU figures (Bastidas et al.: 146 s CNN, 484 s LSTM; losses 0.01211, 0.00812).
* ``batched``: per-customer models for ``--batched-customers`` customers, trained together in one
  batched pass (``train_deep``) against a loop that trains the same model one customer at a
  time, same epochs and batch size; the per-customer final losses are asserted equal.

    .venv/bin/python benchmarks/deep_training.py                      # everything, CPU or CUDA
    .venv/bin/python benchmarks/deep_training.py --parts batched --batched-epochs 2

* ``shap``: the forecaster's 10 top-scored events of each customer up to ``--anomalies``, explained
  as the pipeline does (DeepExplainer on the scalar forecast error, 50 background windows of the
  same customer), against shap's KernelExplainer on the same network and background for
  ``--kernel-windows`` windows; seconds per window compared.

* ``msda``: the paper's library (``msda`` 1.10.0, ``Anamoly.compute``) against ours on the same
  scaled windows (the epochs part's, per customer scaled as the pipeline scales) and the same
  ``--msda-epochs``: time per epoch (the median epoch of each side, so one slow epoch on a noisy
  machine does not decide), loss after those epochs, and the memory of training plus scoring
  every window (the peak less the process's memory once the windows are loaded: both sides get
  the same array and carry torch; the ratio with the windows counted is printed too), each side
  in a fresh process. MSDA runs in its own virtual
  environment (``--msda-env``, created on first use with ``torch==2.13.0 msda==1.10.0``; never a
  dependency of the package). Its LSTM scores all its windows in one pass with the autograd
  graph kept (about 23 GB for 170k windows), so both LSTMs get the first ``--msda-lstm-windows``.

Last line: ``RESULT speedup_vs_msda=… peak_mb_ratio_vs_msda=… cnn_30ep_s=… lstm_30ep_s=… loss_cnn=…
loss_lstm=… batched_speedup=… shap_speedup_vs_kernel=… … device=cpu|cuda`` (``speedup_vs_msda``,
``peak_mb_ratio_vs_msda`` and ``batched_speedup`` are the worse of the two models; per model they
are printed as ``…_cnn`` and ``…_lstm``, beside ``shap_1000_s``).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure import peak_rss_mb  # noqa: E402

from crm_pipeline.detectors.deep.data import (  # noqa: E402
    CustomerEvents,
    RangeScaler,
    load_events,
    sliding_windows,
)
from crm_pipeline.detectors.deep.device import resolve_device  # noqa: E402
from crm_pipeline.detectors.deep.errors import event_errors  # noqa: E402
from crm_pipeline.detectors.deep.fit import DeepSettings, train_deep  # noqa: E402
from crm_pipeline.detectors.deep.models import build_model  # noqa: E402
from crm_pipeline.detectors.deep.training import train_groups  # noqa: E402
from crm_pipeline.warehouse.store import Warehouse, Window  # noqa: E402

PAPER = {"deepant": (146.0, 0.01211), "lstm_autoencoder": (484.0, 0.00812)}
SHORT = {"deepant": "cnn", "lstm_autoencoder": "lstm"}
CRM_ENTITIES = ("customers", "opportunities", "quotations", "orders")
EVERYTHING = Window(date(1900, 1, 1), date(2100, 1, 1))
PARTS = ("msda", "epochs", "batched", "shap")
MSDA = {"deepant": "deepcnn", "lstm_autoencoder": "lstmaenn"}
MSDA_REQUIREMENTS = ("torch==2.13.0", "msda==1.10.0", "numpy", "pandas", "scikit-learn")


def crm_warehouse(cache: Path, customers_per_tenant: int) -> Path:
    """A warehouse holding the demo's encoded CRM events at this size (built once; the imports
    are here so that a machine given the cached file needs no ODBC driver)."""
    from crm_pipeline.demo.generator import DemoSpec, generate_tenants
    from crm_pipeline.demo.writers import write_sqlite
    from crm_pipeline.entities import ENTITIES
    from crm_pipeline.features.encoding import learn_encodings, write_crm_events
    from crm_pipeline.sources.dialects import SQLiteDialect
    from crm_pipeline.sources.queries import default_query
    from crm_pipeline.sources.runner import EachDbRunner
    from crm_pipeline.warehouse.extract import extract_entity

    path = cache / f"deep_bench_{customers_per_tenant}.duckdb"
    if path.exists():
        return path
    spec = DemoSpec(customers_per_tenant=customers_per_tenant)
    with tempfile.TemporaryDirectory() as tenants:
        for tenant in generate_tenants(spec):
            write_sqlite(tenant, tenants)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        warehouse = Warehouse(partial)
        runner = EachDbRunner(SQLiteDialect(Path(tenants)))
        for entity in CRM_ENTITIES:
            window = EVERYTHING if ENTITIES[entity].monthly else None
            extract_entity([(runner, default_query(entity))], warehouse, entity, "bench", "all", window)
        with warehouse.connect() as con:
            keys = [
                k for (k,) in con.execute("SELECT partition_key FROM customer_keys ORDER BY 1").fetchall()
            ]
            learn_encodings(con, "bench")
            write_crm_events(con, keys)
    partial.rename(path)
    return path


def load(path: Path) -> list[CustomerEvents]:
    with Warehouse(path).connect(read_only=True) as con:
        keys = [k for (k,) in con.execute("SELECT partition_key FROM customer_keys ORDER BY 1").fetchall()]
        return load_events(con, keys)


def epochs_part(customers: list[CustomerEvents], epochs: int, device: torch.device) -> dict[str, float]:
    """One global model per kind, ``epochs`` epochs over every window."""
    figures = {}
    for kind in PAPER:
        settings = DeepSettings(model=kind, mode="global", epochs=epochs)
        trained = train_deep(customers, settings, device, mixed_precision=device.type == "cuda",
                             progress=lambda message: None)  # fmt: skip
        windows = sum(
            max(len(c) - trained.model.span + 1, 0) for c in customers if c.partition_key in trained.groups
        )
        seconds, loss = trained.log.seconds, trained.log.epoch_losses[-1]
        paper_s, paper_loss = PAPER[kind]
        print(
            f"{kind:>17}: {epochs} epochs over {windows:,} windows in {seconds:6.1f}s "
            f"({seconds / epochs:5.2f}s/epoch, {trained.log.windows_per_s:,.0f} windows/s), "
            f"final loss {loss:.5f}"
            f" | paper (Colab GPU, 30 epochs): {paper_s:.0f}s, loss {paper_loss}"
        )
        figures[f"{SHORT[kind]}_{epochs}ep_s"] = seconds
        figures[f"loss_{SHORT[kind]}"] = loss
    return figures


def batched_part(
    customers: list[CustomerEvents], n: int, epochs: int, device: torch.device
) -> dict[str, float]:
    """Per-customer models: one batched pass against a loop of single-customer trainings."""
    sample = customers[:n]
    figures = {}
    for kind in PAPER:
        settings = DeepSettings(model=kind, epochs=epochs)
        quiet = {"progress": lambda message: None}
        started = time.perf_counter()
        batched = train_deep(sample, settings, device, **quiet)
        batched_s = time.perf_counter() - started
        started = time.perf_counter()
        losses = {}
        for customer in sample:
            if customer.partition_key in batched.groups:
                alone = train_deep([customer], settings, device, **quiet)
                losses[customer.partition_key] = alone.log.group_losses[0]
        loop_s = time.perf_counter() - started
        together = {k: batched.log.group_losses[g] for k, g in batched.groups.items()}
        worst = max(abs(together[k] - v) / max(v, 1e-12) for k, v in losses.items())
        assert worst < 1e-2, f"{kind}: batched and looped losses differ by {worst:.2%}"
        print(
            f"{kind:>17}: {len(losses)} customers x {epochs} epochs: batched {batched_s:6.1f}s, "
            f"loop {loop_s:6.1f}s -> {loop_s / batched_s:.1f}x (losses equal within {worst:.1e})"
        )
        figures[f"batched_speedup_{SHORT[kind]}"] = loop_s / batched_s
    return {"batched_speedup": min(figures.values()), **figures}


def shap_part(
    customers: list[CustomerEvents], anomalies: int, kernel_windows: int, device: torch.device
) -> dict[str, float]:
    """SHAP of the forecaster's top-scored events (10 per customer) with our DeepExplainer path
    against shap's KernelExplainer on the same network and the same background, per window."""
    import shap

    from crm_pipeline.detectors.deep.fit import customer_model, score_events
    from crm_pipeline.explain.deep import GRADIENT_SAMPLES, explain_events
    from crm_pipeline.explain.networks import ForecastError

    sample = customers[: -(-anomalies // 10) + 20]
    trained = train_deep(sample, DeepSettings(epochs=3), device, progress=lambda message: None)
    scored, _ = score_events(trained, sample, device)
    by_key = {c.partition_key: c for c in sample}
    picks, total = [], 0
    for s in scored:
        if total >= anomalies:
            break
        events = by_key[s.partition_key]
        position = {r: i for i, r in enumerate(events.record_ids)}
        best = s.record_ids[np.argsort(-s.score)[: min(10, anomalies - total)]]
        picks.append((events, np.array(sorted(position[r] for r in best))))
        total += len(best)
    started = time.perf_counter()
    for events, positions in picks:
        explain_events(trained, events, positions, device, background=50)
    deep_s = time.perf_counter() - started
    lstm = train_deep(
        sample, DeepSettings(model="lstm_autoencoder", epochs=3), device, progress=lambda m: None
    )
    started = time.perf_counter()
    for events, positions in picks:  # the same events, by expected gradients
        explain_events(lstm, events, positions, device, background=50)
    lstm_s = time.perf_counter() - started
    events, positions = picks[0]
    model = customer_model(trained, events.partition_key)
    network = ForecastError(model).eval()
    windows = sliding_windows(trained.scalers[events.partition_key].transform(events.values), model.span)
    chosen = positions[:kernel_windows] - model.lookback
    rest = np.setdiff1d(np.arange(len(windows)), positions - model.lookback)
    background = windows[np.random.default_rng(0).choice(rest, size=min(50, len(rest)), replace=False)]

    def score(flat: np.ndarray) -> np.ndarray:
        w = torch.from_numpy(flat.reshape(-1, model.span, model.n_features).astype(np.float32))
        with torch.no_grad():
            return network(w[:, :-1].transpose(1, 2), w[:, -1])[:, 0].numpy()

    kernel = shap.KernelExplainer(score, background.reshape(len(background), -1))
    started = time.perf_counter()
    kernel.shap_values(windows[chosen].reshape(len(chosen), -1), silent=True)
    kernel_per_window = (time.perf_counter() - started) / len(chosen)
    deep_per_window = deep_s / total
    print(
        f"SHAP of {total} flagged events ({len(picks)} customers, background 50): {deep_s:.1f}s "
        f"({deep_per_window * 1000:.1f} ms a window) | KernelExplainer, same network and background, "
        f"{len(chosen)} windows: {kernel_per_window:.2f}s a window "
        f"-> {kernel_per_window / deep_per_window:.0f}x; the same events of the LSTM autoencoder "
        f"(expected gradients, {GRADIENT_SAMPLES} samples): {lstm_s:.1f}s"
    )
    return {
        "shap_1000_s": deep_s * 1000 / total,
        "shap_1000_s_lstm": lstm_s * 1000 / total,
        "shap_speedup_vs_kernel": kernel_per_window / deep_per_window,
    }


def msda_python(env: Path) -> Path:
    """The interpreter of MSDA's own environment, created on first use (torch pinned: any other
    torch requirement would download a CUDA build)."""
    python = env / "bin" / "python"
    if not python.exists():
        print(f"creating MSDA's environment in {env} (about a minute)")
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *MSDA_REQUIREMENTS], check=True)
    return python


def pooled_windows(customers: list[CustomerEvents], span: int) -> np.ndarray:
    """Every customer's windows, each customer scaled by its own range as the pipeline scales."""
    parts = [sliding_windows(RangeScaler.fit(c.values).transform(c.values), span) for c in customers]
    return np.ascontiguousarray(np.concatenate(parts))


def ours_child(kind: str, path: str, epochs: int, device: torch.device) -> None:
    """Our global model on the windows in ``path`` (batches of 1024, lr 1e-3), then every window
    scored; prints what ``msda_runner.py`` prints."""
    before_data = peak_rss_mb()
    windows = np.load(path)
    base = peak_rss_mb()
    model = build_model(kind, [0], n_features=windows.shape[2], lookback=10)
    windows = windows[:, : model.span]
    ends = [time.perf_counter()]  # and one stamp after each epoch

    def stamp(*_: object) -> None:
        ends.append(time.perf_counter())

    log = train_groups(model, [windows], [0], epochs, 1024, 1e-3, device, progress=stamp)
    started = time.perf_counter()
    event_errors(model, [windows], [len(windows) + model.span - 1], device)
    figures = {
        "windows": len(windows),
        "epoch_s": list(np.diff(ends)),
        "losses": log.epoch_losses,
        "score_s": time.perf_counter() - started,
        "peak_mb": peak_rss_mb(),
        "base_mb": base,
        "before_data_mb": before_data,
    }
    print(json.dumps(figures))


def fmt(seconds: list[float]) -> str:
    """Epoch seconds as ``1.02/0.98/1.10``."""
    return "/".join(f"{v:.2f}" for v in seconds)


def msda_part(
    customers: list[CustomerEvents], env: Path, epochs: int, lstm_windows: int, device: torch.device
) -> dict[str, float]:
    """MSDA's two models against ours on the same windows and epochs, each in a fresh process."""
    python = msda_python(env)
    windows = pooled_windows(customers, 11)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, theirs in MSDA.items():
            subset = windows if kind == "deepant" else windows[:lstm_windows]
            path = str(Path(tmp) / f"{kind}.npy")
            np.save(path, subset)
            runs = {}
            for side, command in (
                ("msda", [str(python), str(ROOT / "benchmarks" / "msda_runner.py"), theirs]),
                ("ours", [sys.executable, __file__, "--device", device.type, "--child-ours", kind]),
            ):
                out = subprocess.run([*command, path, str(epochs)], capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"{side} {kind} failed:\n{out.stderr[-3000:]}")
                runs[side] = json.loads(out.stdout.strip().splitlines()[-1])
            msda, ours = runs["msda"], runs["ours"]
            epoch_s = {side: float(np.median(run["epoch_s"])) for side, run in runs.items()}
            speedup = epoch_s["msda"] / epoch_s["ours"]
            work = {side: run["peak_mb"] - run["base_mb"] for side, run in runs.items()}
            with_input = {side: run["peak_mb"] - run["before_data_mb"] for side, run in runs.items()}
            memory = work["ours"] / work["msda"]
            print(
                f"{kind:>17} vs MSDA {theirs}, {len(subset):,} windows x {epochs} epochs: "
                f"{epoch_s['msda']:.2f}s/epoch (batch 32, lr 1e-5) against "
                f"{epoch_s['ours']:.2f}s/epoch -> {speedup:.1f}x (epochs {fmt(msda['epoch_s'])} against "
                f"{fmt(ours['epoch_s'])}); loss after {epochs} epochs "
                f"{msda['losses'][-1]:.5f} against {ours['losses'][-1]:.5f}; scoring {msda['score_s']:.1f}s "
                f"against {ours['score_s']:.1f}s; peak memory {msda['peak_mb']:,.0f} MB against "
                f"{ours['peak_mb']:,.0f} MB, of which training and scoring {work['msda']:,.0f} MB against "
                f"{work['ours']:,.0f} MB ({1000 * work['msda'] / len(subset):.1f} against "
                f"{1000 * work['ours'] / len(subset):.1f} MB per 1,000 windows); with the windows "
                f"counted {with_input['msda']:,.0f} MB against {with_input['ours']:,.0f} MB"
            )
            figures |= {
                f"speedup_vs_msda_{SHORT[kind]}": speedup,
                f"peak_mb_ratio_vs_msda_{SHORT[kind]}": memory,
                f"peak_mb_ratio_with_input_{SHORT[kind]}": with_input["ours"] / with_input["msda"],
                f"loss_msda_{SHORT[kind]}": msda["losses"][-1],
                f"loss_ours_{SHORT[kind]}_{epochs}ep": ours["losses"][-1],
            }
    return {
        "speedup_vs_msda": min(figures["speedup_vs_msda_cnn"], figures["speedup_vs_msda_lstm"]),
        "peak_mb_ratio_vs_msda": max(
            figures["peak_mb_ratio_vs_msda_cnn"], figures["peak_mb_ratio_vs_msda_lstm"]
        ),
        **figures,
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--anomalies", type=int, default=1000, help="flagged events the shap part explains")
    p.add_argument("--kernel-windows", type=int, default=10, help="windows KernelExplainer explains")
    p.add_argument("--customers-per-tenant", type=int, default=46, help="22 tenants; 46 gives 1,000+")
    p.add_argument("--epoch-events", type=int, default=170_000, help="events the epochs part trains on")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batched-customers", type=int, default=1000)
    p.add_argument("--batched-epochs", type=int, default=5)
    p.add_argument("--msda-env", default=str(ROOT / ".venv-msda"), help="MSDA's own environment")
    p.add_argument("--msda-epochs", type=int, default=3)
    p.add_argument("--msda-lstm-windows", type=int, default=40_000)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=tempfile.gettempdir())
    p.add_argument("--child-ours", nargs=3, metavar=("KIND", "WINDOWS", "EPOCHS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    device = resolve_device(args.device)
    if args.child_ours:
        kind, path, epochs = args.child_ours
        return ours_child(kind, path, int(epochs), device)
    torch.manual_seed(0)
    started = time.perf_counter()
    customers = load(crm_warehouse(Path(args.cache), args.customers_per_tenant))
    events = sum(len(c) for c in customers)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{len(customers)} customers, {events:,} events ready in {time.perf_counter() - started:.0f}s; "
        f"device: {name}"
    )
    figures: dict[str, float] = {}
    sizes = np.cumsum([len(c) for c in customers])
    demo_sized = customers[: int(np.searchsorted(sizes, args.epoch_events)) + 1]
    if "msda" in args.parts:
        env = Path(args.msda_env)
        figures |= msda_part(demo_sized, env, args.msda_epochs, args.msda_lstm_windows, device)
    if "epochs" in args.parts:
        figures |= epochs_part(demo_sized, args.epochs, device)
    if "batched" in args.parts:
        figures |= batched_part(customers, args.batched_customers, args.batched_epochs, device)
    if "shap" in args.parts:
        figures |= shap_part(customers, args.anomalies, args.kernel_windows, device)
    fields = " ".join(f"{k}={v:.5g}" for k, v in figures.items())
    print(f"RESULT {fields} device={device.type}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
