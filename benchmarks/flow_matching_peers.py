"""Flow matching against TorchCFM and Meta's flow_matching on 2-D shapes, side by side.

Every side trains the same network (``TimeMLP`` 3 × 128, probgen's flow_matching
default on 2-D) on the same data, batch and CPU budget, with its own library's
loss, path and coupling; probgen then scores every trained field with one
estimator, its exact ODE likelihood.

- Data: a pool of ``--pool`` exact training points of the shape (``ToyDataset``
  with ``n_train``), written with the standardisation (μ, s) fitted on it
  (``build_model``'s ``mean_std``) to a safetensors file every side reads;
  batches of 256 are drawn from it with replacement. probgen's model is built as
  the CLI builds it (``Standardized`` around ``flow_matching``); the peers
  standardise the pool once when they load it.
- Training: Adam, lr 2e-3 with cosine decay in the CPU time spent, until
  ``--budget`` CPU-seconds (``time.process_time`` in each side's own process, one
  thread: ``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``), float32. probgen
  trains with its library's optimizer (``probgen.train.optim.make_optimizers``:
  torch's fused Adam kernel) on ``model.loss``; the peers with ``torch.optim.Adam``
  as their examples do (``benchmarks/flow_matching_peer.py``, run by each peer's
  own python). Row ``probgen_fm_torch_adam`` (``--rows``, not run by default) is
  probgen with ``torch.optim.Adam`` too, to separate the optimizer from the rest
  of the step.
- Rows, run A B A B within each (shape, seed): ``probgen_fm`` (independent
  coupling, the default time law t − t_min ∝ Beta(½, 1)), ``torchcfm_cfm``
  (``ConditionalFlowMatcher``), ``flow_matching`` (``AffineProbPath(CondOTScheduler())``),
  ``probgen_fm_uniform`` (probgen with t ~ U[t_min, 1], the peers' time law),
  ``probgen_fm_ot`` (exact minibatch OT),
  ``torchcfm_otcfm`` (``ExactOptimalTransportConditionalFlowMatcher``), all with
  σ = 0.
- Scoring: every side's weights are loaded into an identical probgen velocity
  network (the peers' through ``TimeReversed``: they put noise at t = 0, probgen
  at t = 1, so v(x, t) = −u(x, 1 − t)) inside the same ``Standardized``
  flow-matching model; KL gap = mean(log p − log p_θ) on ``--n-test`` test
  points (ODE with the exact divergence, rtol = atol = 1e-5), with its paired
  standard error and the paired difference to probgen's gap; MMD² of 2000
  samples (probgen's ``probability_flow`` sampler on every field) to an exact
  sample, beside exact-vs-exact.
- Conversion check: on the same prior draws, the peer's own ODE samples (noise →
  data, dopri5 at 1e-6) against probgen's solve of the converted field (t = 1 → 0),
  max |Δ| in standardised units; for flow_matching also its own
  ``compute_likelihood`` (exact divergence) against probgen's ``ode_log_likelihood``
  on the same points.

Targets (issue 14): probgen's KL gap no worse than the best peer's, and training
steps per CPU-second at least 1.2× the fastest peer's.

    python3 -m venv /work/venvs/torchcfm
    /work/venvs/torchcfm/bin/pip install torch==2.13.0
    /work/venvs/torchcfm/bin/pip install --no-deps torchcfm==1.0.7 torchdiffeq==0.2.5
    /work/venvs/torchcfm/bin/pip install pot safetensors numpy
    python3 -m venv /work/venvs/flow_matching
    /work/venvs/flow_matching/bin/pip install torch==2.13.0
    /work/venvs/flow_matching/bin/pip install flow-matching==1.0.10 safetensors tqdm
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python \\
        benchmarks/flow_matching_peers.py --budget 60 --seeds 3

(``torchcfm`` without ``--no-deps`` pulls a newer, CUDA torch through torchdyn.)

References: Tong et al. (2024), "Improving and generalizing flow-based generative
models with minibatch optimal transport" (TorchCFM); Lipman et al. (2024), "Flow
matching guide and code" (flow_matching).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from probgen.core import DataSpec, Estimate
from probgen.data.toy import ToyDataset
from probgen.models import build_model
from probgen.models.diffusion import (
    LinearPath,
    TimeReversed,
    VelocityPrediction,
    ode_log_likelihood,
)
from probgen.models.diffusion.samplers import solve_probability_flow
from probgen.models.standardize import fit_standardization
from probgen.train.config import TrainConfig, atomic_write_text
from probgen.train.optim import make_optimizers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_matching_toy import sample_mmd, summary

HIDDEN = (128, 128, 128)
LR, BATCH = 2e-3, 256
CHECK_TOL = 1e-6
SPEC = DataSpec(event_shape=(2,))
ROWS: dict[str, tuple[str, str]] = {
    "probgen_fm": ("probgen", "independent"),
    "torchcfm_cfm": ("torchcfm", "independent"),
    "flow_matching": ("flow_matching", "independent"),
    "probgen_fm_uniform": ("probgen_uniform", "independent"),
    "probgen_fm_ot": ("probgen", "ot"),
    "torchcfm_otcfm": ("torchcfm", "ot"),
    "probgen_fm_torch_adam": ("probgen_torch_adam", "independent"),
}
"""Row -> (side, coupling), in the order they run (A B A B …). ``probgen`` trains with the
family's default time law (t − t_min ∝ Beta(½, 1), ``time_power`` 2), ``probgen_uniform``
with t ~ U[t_min, 1] as the peers do."""
PEERS = ("torchcfm", "flow_matching")
EMA_DECAY = 0.999
EMA_ROWS = ("probgen_fm",)
"""Rows that also keep an EMA of the weights (updated every step, its cost in the row's
steps/CPU-s) and score it beside the raw weights: time constant 1/(1 − decay) = 1000
steps, about 5 % of a 60 CPU-s run (Karras et al. 2024's relative EMA width 0.05)."""


def write_data(shape: str, folder: Path, pool: int, n_check: int) -> tuple[ToyDataset, Path]:
    """The training pool, its (μ, s), prior draws and check points, as safetensors."""
    data = ToyDataset(shape, n_train=pool, n_test=10_000, seed=0)
    train = data.split("train").float().contiguous()
    shift, scale = fit_standardization(train)  # build_model's default map, "mean_std"
    g = torch.Generator().manual_seed(12345)
    tensors = {
        "train": train,
        "shift": shift.contiguous(),
        "scale": scale.contiguous(),
        "noise": torch.randn(n_check, 2, generator=g),  # prior draws, standardised space
        "check": ((data.split("test")[:n_check].float() - shift) / scale).contiguous(),
    }
    path = folder / f"{shape}.safetensors"
    save_file(tensors, str(path))
    return data, path


def _data_map(file: dict[str, Tensor]) -> dict[str, list[float]]:
    """The file's (μ, s) as ``build_model``'s given map."""
    return {"shift": file["shift"].tolist(), "scale": file["scale"].tolist()}


def probgen_train(
    file: dict[str, Tensor],
    coupling: str,
    seed: int,
    budget: float,
    torch_adam: bool,
    ema_decay: float | None = None,
    time_power: float | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Tensor] | None]:
    """probgen's flow matching as the CLI builds it, on the file's pool; its net's weights
    and, with ``ema_decay``, those of the EMA the engine keeps (``train.ema_decay``).
    ``time_power`` k: training times t − t_min ∝ Beta(1/k, 1) (1: uniform; None: the
    family's default)."""
    torch.manual_seed(seed)
    pool = file["train"]
    times = {} if time_power is None else {"time_power": time_power}
    model = build_model(
        "flow_matching",
        SPEC,
        standardize=_data_map(file),
        hidden=HIDDEN,
        coupling=coupling,
        **times,
    )
    if torch_adam:
        opt = torch.optim.Adam(model.parameters(), lr=LR)
    else:
        opt = make_optimizers(model.players(), TrainConfig(lr=LR))["model"]
    g = torch.Generator().manual_seed(seed)
    ema = None
    if ema_decay is not None:  # as probgen.train.engine builds it
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    steps, start = 0, time.process_time()
    model.train()
    while (spent := time.process_time() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * spent / budget))
        loss = model.loss(pool[torch.randint(len(pool), (BATCH,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        steps += 1
    spent = time.process_time() - start

    def weights(m: torch.nn.Module) -> dict[str, Tensor]:
        net = m.model.denoiser.net
        return {f"net.{k}": v.detach().clone() for k, v in net.state_dict().items()}

    fit = {"steps": steps, "train_cpu_seconds": spent, "steps_per_cpu_second": steps / spent}
    fit["optimizer"] = type(opt).__name__ + ("" if torch_adam else " (fused)")
    fit["ema_decay"] = ema_decay
    return weights(model), fit, None if ema is None else weights(ema.module)


def peer_train(
    python: str, library: str, coupling: str, data_path: Path, out: Path, args: argparse.Namespace
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Run ``flow_matching_peer.py`` in the peer's environment; its weights and figures."""
    root = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(root.parent), "OMP_NUM_THREADS": "1"}
    cmd = [python, str(root / "flow_matching_peer.py"), "--library", library]
    cmd += ["--coupling", coupling, "--data", str(data_path), "--out", str(out)]
    cmd += ["--seed", str(args.seed_now), "--budget", str(args.budget), "--batch", str(BATCH)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{library} failed:\n{done.stderr[-3000:]}")
    return load_file(str(out)), json.loads(done.stdout.strip().splitlines()[-1])


def scoring_model(state: dict[str, Tensor], file: dict[str, Tensor], reversed_time: bool):
    """probgen's Standardized flow-matching model with ``state`` as its velocity network."""
    model = build_model("flow_matching", SPEC, standardize=_data_map(file), hidden=HIDDEN)
    net = model.model.denoiser.net
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    if reversed_time:
        model.model.denoiser.net = TimeReversed(net)
    model.eval()
    return model


def conversion_check(model, state: dict[str, Tensor], file: dict[str, Tensor]) -> dict:
    """The peer's own samples (and flow_matching's own log-likelihoods) against probgen's."""
    denoiser = model.model.denoiser
    with torch.no_grad():
        ours = solve_probability_flow(
            denoiser, file["noise"], torch.tensor(1.0), torch.tensor(0.0),
            CHECK_TOL, CHECK_TOL, "dopri5",
        )  # fmt: skip
    out = {"max_abs_sample_difference": (ours - state["samples"]).abs().max().item()}
    out["sample_scale"] = state["samples"].abs().max().item()
    if "log_likelihood" in state:
        exact_end = VelocityPrediction(denoiser.net, LinearPath(t_min=1e-9))
        log_q = ode_log_likelihood(exact_end, file["check"], rtol=CHECK_TOL, atol=CHECK_TOL)
        diff = (log_q - state["log_likelihood"]).abs()
        out["max_abs_log_likelihood_difference"] = diff.max().item()
        out["mean_log_likelihood"] = state["log_likelihood"].mean().item()
    return out


def score(model, data: ToyDataset, n_test: int, seed: int) -> tuple[dict[str, Any], Tensor]:
    """KL gap (ODE, exact divergence) on the test points and MMD² of 2000 samples."""
    x = data.split("test")[:n_test].float()
    start = time.process_time()
    log_q = model.log_prob(x).detach().double()
    cpu = time.process_time() - start
    gap = Estimate.from_samples(data.truth.log_prob(x).detach().double() - log_q, kind="exact")
    torch.manual_seed(seed + 41)
    with torch.no_grad():
        samples = model.sample(2000).detach()
    figures = {"kl_gap": vars(gap), "nll_cpu_seconds": cpu, "n_test": len(x)}
    figures["mmd"] = sample_mmd(samples, data, seed)
    return figures, log_q


def table_rows(runs: list[dict], shapes: list[str], rows: list[str]) -> list[dict]:
    """Per (shape, row): medians (min–max) over seeds, and speed ratios to the peers."""
    table = []
    for shape in shapes:
        for row in rows:
            mine = [r for r in runs if r["shape"] == shape and r["row"] == row]
            if not mine:
                continue
            entry = {
                "shape": shape,
                "row": row,
                "steps_per_cpu_s": summary([r["steps_per_cpu_second"] for r in mine]),
                "kl_gap": summary([r["kl_gap"]["value"] for r in mine]),
                "mmd2": summary([r["mmd"]["mmd2"] for r in mine]),
                "exact_vs_exact": summary([r["mmd"]["exact_vs_exact"] for r in mine]),
            }
            if "gap_minus_probgen" in mine[0]:
                entry["gap_minus_probgen"] = summary([r["gap_minus_probgen"] for r in mine])
            if "ema" in mine[0]:
                entry["ema_kl_gap"] = summary([r["ema"]["kl_gap"]["value"] for r in mine])
                entry["ema_gap_minus_raw"] = summary([r["ema"]["gap_minus_raw"] for r in mine])
            table.append(entry)
    return table


def speed_ratios(runs: list[dict]) -> dict[str, Any]:
    """probgen steps/CPU-s over each peer's, per (shape, seed) pair, and their median."""
    pairs = {
        "probgen_fm / torchcfm_cfm": ("probgen_fm", "torchcfm_cfm"),
        "probgen_fm / flow_matching": ("probgen_fm", "flow_matching"),
        "probgen_fm_uniform / torchcfm_cfm": ("probgen_fm_uniform", "torchcfm_cfm"),
        "probgen_fm_uniform / flow_matching": ("probgen_fm_uniform", "flow_matching"),
        "probgen_fm_ot / torchcfm_otcfm": ("probgen_fm_ot", "torchcfm_otcfm"),
        "probgen_fm_torch_adam / torchcfm_cfm": ("probgen_fm_torch_adam", "torchcfm_cfm"),
        "probgen_fm_torch_adam / flow_matching": ("probgen_fm_torch_adam", "flow_matching"),
    }
    rate = {(r["shape"], r["seed"], r["row"]): r["steps_per_cpu_second"] for r in runs}
    out = {}
    for name, (a, b) in pairs.items():
        ratios = [
            rate[(s, seed, a)] / rate[(s, seed, b)]
            for (s, seed, row) in rate
            if row == a and (s, seed, b) in rate
        ]
        if ratios:
            out[name] = {"per_pair": ratios, "median": statistics.median(ratios)}
    return out


def write_result(runs: list[dict], versions: dict, args: argparse.Namespace) -> dict[str, Any]:
    """The JSON of the runs so far (written after every run, atomically); returns it."""
    result = {
        "recipe": {
            "hidden": HIDDEN,
            "lr": LR,
            "batch": BATCH,
            "budget_cpu_seconds": args.budget,
            "timer": "time.process_time",
            "pool": args.pool,
            "dtype": "float32",
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "versions": versions,
        "threads": torch.get_num_threads(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "table": table_rows(runs, args.shapes, args.rows),
        "speed_ratios": speed_ratios(runs),
    }
    atomic_write_text(args.out, json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["8gaussians", "two_moons"])
    default_rows = [r for r in ROWS if r != "probgen_fm_torch_adam"]
    parser.add_argument("--rows", nargs="+", default=default_rows, choices=list(ROWS))
    parser.add_argument("--budget", type=float, default=60.0, help="CPU-s of training per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first, first + 1, …")
    parser.add_argument(
        "--merge", nargs="+", type=Path, default=None,
        help="only merge the runs of these result files (one per shape or seed) into --out",
    )  # fmt: skip
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-check", type=int, default=200)
    parser.add_argument("--venvs", type=Path, default=Path("/work/venvs"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/flow_matching_peers.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs: list[dict] = []
    versions: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version()}
    if args.merge:
        for path in args.merge:
            part = json.loads(path.read_text())
            runs += part["runs"]
            versions |= part["versions"]
        report(write_result(runs, versions, args), args)
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for shape in args.shapes:
            data, data_path = write_data(shape, folder, args.pool, args.n_check)
            file = load_file(str(data_path))
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                args.seed_now = seed
                ours: dict[str, Tensor] = {}
                for row in args.rows:
                    side, coupling = ROWS[row]
                    ema_state = None
                    if side in PEERS:
                        python = str(args.venvs / side / "bin" / "python")
                        out = folder / f"{shape}_{seed}_{row}.safetensors"
                        state, fit = peer_train(python, side, coupling, data_path, out, args)
                        versions |= fit.pop("versions")
                    else:
                        decay = EMA_DECAY if row in EMA_ROWS else None
                        power = 1.0 if side == "probgen_uniform" else None
                        state, fit, ema_state = probgen_train(
                            file, coupling, seed, args.budget, side == "probgen_torch_adam", decay,
                            power,
                        )  # fmt: skip
                    model = scoring_model(state, file, reversed_time=side in PEERS)
                    run: dict[str, Any] = {"shape": shape, "seed": seed, "row": row} | fit
                    figures, log_q = score(model, data, args.n_test, seed)
                    run |= figures
                    if side not in PEERS and ema_state is not None:
                        ema_model = scoring_model(ema_state, file, reversed_time=False)
                        run["ema"], log_q_ema = score(ema_model, data, args.n_test, seed)
                        diff = Estimate.from_samples(log_q - log_q_ema, kind="exact")
                        run["ema"]["gap_minus_raw"] = diff.value
                        run["ema"]["gap_minus_raw_stderr"] = diff.stderr
                    if side in PEERS:
                        run["conversion_check"] = conversion_check(model, state, file)
                    if side == "probgen":
                        ours[coupling] = log_q
                    elif coupling in ours:  # paired: gap(row) − gap(probgen, same coupling)
                        diff = Estimate.from_samples(ours[coupling] - log_q, kind="exact")
                        run["gap_minus_probgen"] = diff.value
                        run["gap_minus_probgen_stderr"] = diff.stderr
                    runs.append(run)
                    write_result(runs, versions, args)
                    check = run.get("conversion_check", {})
                    extra = "".join(
                        f"  {k.replace('max_abs_', 'Δ')} {v:.1e}"
                        for k, v in check.items()
                        if k.startswith("max_abs")
                    )
                    print(
                        f"{shape:10s} seed {seed} {row:22s} {fit['steps']:6d} steps "
                        f"({fit['steps_per_cpu_second']:.0f}/CPU-s)  KL gap "
                        f"{run['kl_gap']['value']:.4f} ± {run['kl_gap']['stderr']:.4f}  "
                        f"MMD² {run['mmd']['mmd2']:.5f}{extra}",
                        flush=True,
                    )
    report(write_result(runs, versions, args), args)


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    """The table of medians over seeds and the speed ratios, printed."""
    print("\n| shape | row | steps/CPU-s | KL gap, median (min–max) over seeds | MMD² | EMA gap |")
    print("|---|---|---|---|---|---|")
    for t in result["table"]:
        s, g, m = t["steps_per_cpu_s"], t["kl_gap"], t["mmd2"]
        e = t.get("ema_kl_gap")
        ema = "—" if e is None else f"{e['median']:.4f} ({e['min']:.4f}–{e['max']:.4f})"
        print(
            f"| {t['shape']} | {t['row']} | {s['median']:.0f} ({s['min']:.0f}–{s['max']:.0f}) | "
            f"{g['median']:.4f} ({g['min']:.4f}–{g['max']:.4f}) | {m['median']:.5f} | {ema} |"
        )
    for name, r in result["speed_ratios"].items():
        print(f"steps/CPU-s {name}: median {r['median']:.2f} over {len(r['per_pair'])} pairs")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
