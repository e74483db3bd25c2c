"""The one training loop every model shares: D step, then G step, with checkpoints and logs.

A model family hands the loop a :class:`Task`: its nets (a dict, by the papers' names), which of them
each step optimizes, a deterministic ``batch(step)`` and the two step functions, each returning
(loss, {term: value}). The loop owns everything else:

* device (GPU when there is one), bf16 autocast where it helps (SSIM stays fp32 inside);
* Adam with the config's lr, betas and weight decay;
* a checkpoint every ``checkpoint_every`` steps (atomic) holding nets, optimizers, the RNG state
  and the step; an existing checkpoint is resumed automatically. Because batches depend only on
  the step and the RNG state is restored, a resumed run ends with the same weights as an
  uninterrupted one (on CPU, where kernels are deterministic);
* per-term losses in ``log.csv`` (rows after the resumed step are dropped) and a tqdm bar;
* several GPUs with DistributedDataParallel when launched by ``torchrun``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from harmlib.checkpoint import load_checkpoint, save_checkpoint
from harmlib.config import RuntimeConfig, TrainConfig
from harmlib.data.io import write_text_atomic

StepFn = Callable[[Any], tuple[torch.Tensor, dict[str, float]]]


def fingerprint(value: Any) -> str:
    """16 hex digits of SHA-256 over ``value`` as sorted JSON: what shapes a run (architecture, weights, seed,
    data). A checkpoint resumes only under the same fingerprint; anything else starts the run again."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def epoch_items(step: int, batch_size: int, n: int) -> list[tuple[int, int]]:
    """(epoch, position) of each item of batch ``step`` in an endless sequence of epochs of ``n`` items: a
    function of the step alone, so a resumed run draws exactly the batches an uninterrupted one would."""
    return [divmod(k, n) for k in range(step * batch_size, (step + 1) * batch_size)]


@dataclass
class PairBatches:
    """A family's ``batch(step)`` over an epoch-seeded dataset of pairs: :meth:`items` draws the step's pairs."""

    pairs: Any
    batch_size: int

    def items(self, step: int) -> Any:
        return step_items(self.pairs, step, self.batch_size)


def step_items(pairs: Any, step: int, batch_size: int) -> Any:
    """The items of batch ``step`` from an epoch-seeded dataset of pairs (``set_epoch``, ``epoch``), collated: a
    function of the step alone, so a resumed run draws exactly the batches an uninterrupted one would."""
    items = []
    for epoch, i in epoch_items(step, batch_size, len(pairs)):
        if pairs.epoch != epoch:  # each epoch's pairs are drawn from (seed, epoch): the same whenever they are drawn
            pairs.set_epoch(epoch)
        items.append(pairs[i])
    return default_collate(items)


@dataclass
class Task:
    """What the loop needs from one model family."""

    kind: str
    nets: dict[str, nn.Module]
    g_nets: list[str]
    batch: Callable[[int], Any]
    g_step: StepFn
    d_nets: list[str] = field(default_factory=list)
    d_step: StepFn | None = None
    frozen: list[str] = field(default_factory=list)  # nets that are used but never trained
    fingerprint: str = ""  # of everything that shapes training; a checkpoint of another one is not resumed
    rec_step: StepFn | None = None  # the G step of the first ``train.warmup`` steps (no D step then)
    lr_scale: dict[str, float] = field(default_factory=dict)  # a net's learning rate as a fraction of train.lr
    # one forward pass per step whose result both d_step and g_step read (DRIT++ reuses its translations in
    # both updates); None: each step function gets the batch and runs its own pass
    forward: Callable[[Any], Any] | None = None


def pick_device(runtime: RuntimeConfig) -> torch.device:
    if runtime.device == "auto":
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if runtime.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device={runtime.device} but no CUDA GPU is visible; use device auto or cpu")
    return torch.device(runtime.device)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 (or fp16 on GPU) autocast; ``none`` or fp16 on CPU run in fp32."""
    if amp == "none" or (amp == "fp16" and device.type == "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _distributed() -> tuple[int, int]:
    """(rank, world size); initializes the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def _adam(
    nets: dict[str, nn.Module], names: list[str], cfg: TrainConfig, lr_scale: dict[str, float]
) -> torch.optim.Optimizer | None:
    """One Adam over ``names``, one parameter group per net (so a net can run at its own learning rate) and
    one per submodule named "net.sub" in ``lr_scale`` (e.g. "levers.curve")."""
    groups = []
    for n in names:
        own = {k.split(".", 1)[1]: v for k, v in lr_scale.items() if k.startswith(n + ".")}
        subs = {k: getattr(nets[n], k, None) for k in own}
        taken = {id(p) for m in subs.values() if m is not None for p in m.parameters()}
        rest = [p for p in nets[n].parameters() if id(p) not in taken]
        groups.append({"params": rest, "lr": cfg.lr * lr_scale.get(n, 1.0)})
        groups += [{"params": list(m.parameters()), "lr": cfg.lr * own[k]} for k, m in subs.items() if m is not None]
    groups = [g for g in groups if g["params"]]
    return (
        torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        if groups
        else None
    )


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):  # a family's typed batch
        return type(batch)(**{f.name: _to(getattr(batch, f.name), device) for f in dataclasses.fields(batch)})
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _update(
    opt: torch.optim.Optimizer | None, loss: torch.Tensor, scaler: torch.amp.GradScaler, clip: float = 0.0
) -> None:
    if opt is None:
        return
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    scaler.step(opt)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def _state(task: Task, opts: dict, step: int) -> dict[str, Any]:
    return {
        "kind": f"{task.kind}-training",
        "step": step,
        "nets": {k: _unwrap(m).state_dict() for k, m in task.nets.items()},
        "opts": {k: o.state_dict() for k, o in opts.items() if o is not None},
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "fingerprint": task.fingerprint,
    }


def _set_aside(run_dir: Path) -> None:
    """Keep a checkpoint of another configuration as ``*.stale`` instead of resuming from it."""
    for name in (
        "checkpoint.pt",
        "log.csv",
        "snapshots",
    ):  # snapshots of that run would mix into this one's convergence
        if (run_dir / name).exists():
            if (run_dir / f"{name}.stale").is_dir():
                shutil.rmtree(run_dir / f"{name}.stale")  # an older stale run's snapshots; only the last is kept
            os.replace(run_dir / name, run_dir / f"{name}.stale")
    print(
        f"harmlib: {run_dir}/checkpoint.pt was trained with another configuration; kept as checkpoint.pt.stale, starting afresh",
        flush=True,
    )


def _resumable(ck: dict[str, Any], task: Task, opts: dict) -> bool:
    """Same configuration, and optimizers of the same layout (one parameter group per net since the
    per-net learning rates; an older checkpoint with one group for all nets cannot be resumed)."""
    same_groups = all(
        o is None or len(ck.get("opts", {}).get(k, {}).get("param_groups", [])) == len(o.param_groups)
        for k, o in opts.items()
    )
    return ck.get("fingerprint", "") == task.fingerprint and same_groups


def _resume(task: Task, opts: dict, path: Path) -> int:
    ck = load_checkpoint(path, (f"{task.kind}-training",))
    for k, m in task.nets.items():
        _unwrap(m).load_state_dict(ck["nets"][k])
    for k, o in opts.items():
        if o is not None:
            o.load_state_dict(ck["opts"][k])
    torch.set_rng_state(ck["rng"])
    if ck.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ck["cuda_rng"])
    return int(ck["step"])


def export_payload(
    task: Task, meta: dict[str, Any], path: str | Path, nets: list[str], state: Any = None, **extra: Any
) -> Path:
    """Write a model file: ``kind``, the task's metadata (all but its in-memory ``dataset`` and ``inputs``),
    ``extra`` fields, the state of ``nets`` (or ``state`` as given) and the time; the format every ``export_model`` shares."""
    payload = {k: v for k, v in meta.items() if k not in ("dataset", "inputs")}
    state = {k: _unwrap(task.nets[k]).state_dict() for k in nets} if state is None else state
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return save_checkpoint(path, {"kind": task.kind, **payload, **extra, "state": state, "created": created})


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "snapshots" / f"step{step:06d}.pt"


def save_snapshot(task: Task, run_dir: Path, step: int) -> Path:
    """The trained nets (not D, not the optimizers) at ``step``: the convergence figure's points."""
    state = {k: _unwrap(task.nets[k]).state_dict() for k in task.g_nets}
    return save_checkpoint(
        snapshot_path(run_dir, step),
        {"kind": f"{task.kind}-snapshot", "step": step, "nets": state, "fingerprint": task.fingerprint},
    )


def _write_log(path: Path, rows: list[dict[str, float]]) -> None:
    write_text_atomic(path, pd.DataFrame(rows).to_csv(index=False))


def fit(
    task: Task,
    cfg: TrainConfig,
    runtime: RuntimeConfig,
    run_dir: str | Path,
    seed: int = 0,
    stop_after: int | None = None,
) -> pd.DataFrame:
    """Train ``task`` for ``cfg.iterations`` steps under ``run_dir`` (resuming); returns the log.

    ``stop_after`` ends the run early after that step (as a kill would, but cleanly): tests use
    it to show that resuming reaches the same weights.
    """
    run_dir = Path(run_dir)
    rank, world = _distributed()
    device = pick_device(runtime)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    torch.manual_seed(seed)
    for name, net in task.nets.items():
        net.to(device).train(name not in task.frozen)
        if world > 1 and name not in task.frozen and any(p.requires_grad for p in net.parameters()):
            # static_graph: the same net runs several times per step (E_b on x_u and x_{u->l}, D on real and fake)
            task.nets[name] = nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
            )
    opts = {
        "g": _adam(task.nets, task.g_nets, cfg, task.lr_scale),
        "d": _adam(task.nets, task.d_nets, cfg, task.lr_scale),
    }
    scaler = torch.amp.GradScaler(device.type, enabled=runtime.amp == "fp16" and device.type == "cuda")
    ck_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.csv"
    start, rows = 0, []
    if ck_path.is_file() and not _resumable(load_checkpoint(ck_path), task, opts):
        _set_aside(run_dir)
    if ck_path.is_file():
        start = _resume(task, opts, ck_path)
        if log_path.is_file():
            rows = [r for r in pd.read_csv(log_path).to_dict("records") if r["step"] <= start]
    if rank == 0 and cfg.snapshot_every and start == 0:
        save_snapshot(task, run_dir, 0)  # the untrained nets: where the convergence figure starts
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=task.kind, disable=rank != 0)
    t0 = time.perf_counter()
    for step in bar:
        batch = _to(task.batch(step * world + rank), device)
        terms: dict[str, float] = {}
        warm = step < cfg.warmup and task.rec_step is not None
        with autocast(device, runtime.amp):
            state = batch if warm or task.forward is None else task.forward(batch)
        if task.d_step is not None and not warm:
            with autocast(device, runtime.amp):
                d_loss, d_terms = task.d_step(state)
            _update(opts["d"], d_loss, scaler, cfg.grad_clip)
            terms |= d_terms
        with autocast(device, runtime.amp):
            g_loss, g_terms = task.rec_step(batch) if warm else task.g_step(state)
        _update(opts["g"], g_loss, scaler, cfg.grad_clip)
        scaler.update()  # once per step, after both updates
        terms |= g_terms
        done = step + 1
        if rank == 0 and (done % cfg.log_every == 0 or done == cfg.iterations):
            rows.append({"step": done, "seconds": round(time.perf_counter() - t0, 2), **terms})
            bar.set_postfix({k: f"{v:.3f}" for k, v in list(terms.items())[:4]})
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.iterations):
            save_checkpoint(ck_path, _state(task, opts, done))
            _write_log(log_path, rows)
        if rank == 0 and cfg.snapshot_every and done % cfg.snapshot_every == 0:
            save_snapshot(task, run_dir, done)
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    return pd.DataFrame(rows)
