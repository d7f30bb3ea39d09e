"""The stacked step replayed as one CUDA graph: batch, augmentation, forward, backward,
SGD, schedule and weight average, with no Python between steps.

A step of a net this small is a few hundred tiny kernels; launched one by one
from Python, the GPU waits on the CPU. Captured once, the whole step is one
launch. What changes between steps lives on the device, so the graph reads it:

- the step counter, which indexes the schedule (learning rate and momentum for
  every step, computed up front by stepping the configured scheduler on a
  stand-in optimizer) and the weight average's per-step weight;
- each copy's permutation for the epoch, drawn before the replays from the
  copy's own generator (the first epoch's is its solo run's; after that the
  generator has not made the solo run's augmentation draws, so the orders differ);
- augmentation and dropout numbers, drawn inside the graph from the CUDA
  generator (graph-safe: each replay advances its offset), per image and per
  copy: the same distributions as a solo run, not its numbers, and not saved
  per copy, so a resumed graphed run does not redraw an uninterrupted one's;
- the epoch's loss and accuracy sums, read once when the epoch ends.

SGD (torch's formula: weight decay, momentum, Nesterov) is written out here so
its learning rate and momentum can be device tensors; its momentum buffers are
the torch optimizer's own, so checkpoints hold them as usual. A last, partial
batch runs the same step outside the graph. CPU runs never come here.
"""

from __future__ import annotations

import logging
import warnings

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from mnist_sweep.errors import UserError
from mnist_sweep.run.build import Run
from mnist_sweep.run.data import augment_batch, augmentation
from mnist_sweep.run.optim import build_optimizer, build_scheduler
from mnist_sweep.stack.build import StackedRun
from mnist_sweep.stack.loss import loss_function, teacher_logits

log = logging.getLogger(__name__)

SGD = "torch.optim.SGD"  # the one optimizer whose update the graph carries


def uses_cuda_graph(cfg: DictConfig, device: torch.device) -> bool:
    """Whether a stacked run replays its step as a CUDA graph: on CUDA with SGD (the update
    written out below), unless trainer.cuda_graph=false. CPU runs keep the eager step."""
    if device.type != "cuda" or not bool(cfg.trainer.get("cuda_graph", True)):
        return False
    return str(cfg.optimizer.get("_target_")) == SGD and not cfg.optimizer.get("dampening")


def schedule_table(run: StackedRun | Run, total: int) -> tuple[Tensor, Tensor]:
    """The learning rate and momentum every step of the run uses, as device tensors
    (total,): the configured scheduler stepped on a one-weight stand-in optimizer."""
    stand_in = build_optimizer(run.cfg.optimizer, nn.Linear(1, 1))
    steps = run.steps_per_epoch
    scheduler = build_scheduler(run.cfg.scheduler, stand_in, steps, run.epochs)
    lrs, momenta = [], []
    for _ in range(total):
        group = stand_in.param_groups[0]
        lrs.append(float(group["lr"]))
        momenta.append(float(group.get("momentum", 0.0)))
        stand_in.step()
        scheduler.step()
    as_tensor = lambda values: torch.tensor(values, device=run.device)  # noqa: E731
    return as_tensor(lrs), as_tensor(momenta)


def average_table(run: StackedRun, total: int) -> Tensor | None:
    """The weight each step's weights get in the average (run/averaging.py's rule):
    0 before it starts, 1 at its first update, then EMA's warmed-up 1 - decay or SWA's 1/(n+1)."""
    average = run.average
    if average is None:
        return None
    decay = float(run.cfg.average.decay) if run.cfg.average.kind == "ema" else None
    weights = []
    for t in range(total):
        n = t + 1 - average.first_step  # updates before this one
        if n < 0:
            weights.append(0.0)
        elif n == 0:
            weights.append(1.0)
        elif decay is not None:
            weights.append(1 - min(decay, (1 + n) / (10 + n)))
        else:
            weights.append(1 / (n + 1))
    return torch.tensor(weights, device=run.device)


class GraphedTraining:
    """A stacked run's epochs, each step one replay of a captured CUDA graph."""

    def __init__(self, run: StackedRun):
        optimizer = run.optimizer
        if not isinstance(optimizer, torch.optim.SGD):
            raise UserError(
                f"trainer.cuda_graph=true replays SGD only, not {type(optimizer).__name__}; "
                "use optimizer=sgd or trainer.cuda_graph=false"
            )
        group = optimizer.param_groups[0]
        if group.get("dampening", 0) or group.get("maximize", False):
            raise UserError(
                "trainer.cuda_graph=true: SGD with dampening or maximize is not "
                "replayed; use trainer.cuda_graph=false"
            )
        self.run = run
        device, k = run.device, len(run.copies)
        self.batch = int(run.cfg.data.batch_size)
        total = run.steps_per_epoch * run.epochs
        self.lrs, self.momenta = schedule_table(run, total)
        self.average_weights = average_table(run, total)
        self.weight_decay, self.nesterov = float(group["weight_decay"]), bool(group["nesterov"])
        self.params = list(run.net.parameters())
        for p in self.params:  # torch's first step sets buf = grad: 0 * momentum + grad alike
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p)
        self.buffers = [optimizer.state[p]["momentum_buffer"] for p in self.params]
        self.step = torch.tensor(run.scheduler.last_epoch, device=device)  # steps taken
        self.i = torch.zeros((), dtype=torch.long, device=device)  # step within the epoch
        self.columns = torch.arange(self.batch, device=device)
        self.perms = torch.empty(k, run.data.n_train, dtype=torch.long, device=device)
        self.alive = torch.ones(k, dtype=torch.bool, device=device)
        self.loss_sum = torch.zeros(k, device=device)
        self.correct = torch.zeros(k, dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _averaged(self) -> list[Tensor]:
        if self.run.average is None:
            return []
        module = self.run.average.averaged.module
        return [*module.parameters(), *module.buffers()]

    def _step(self, width: int) -> None:
        """One step of every copy on `width` images each; all state in device tensors."""
        run, data = self.run, self.run.data
        k = len(run.copies)
        idx = self.perms.index_select(1, self.i * self.batch + self.columns[:width])
        x, y = data.train_x[idx], data.train_y[idx]
        augment = augmentation(run.cfg.data.augment, run.cfg.data.mean, run.cfg.data.std)
        if augment is not None:  # the CUDA generator: graph-safe, per image
            x = augment_batch(x.flatten(0, 1), data.background, None, **augment).view_as(x)
        masks = [
            torch.empty((k, width, *layer.shape), device=run.device)
            .bernoulli_(1 - layer.p)
            .div_(1 - layer.p)
            for layer in run.dropout_layers
        ]
        with run.autocast():
            logits = run.net(x, masks)
            losses = loss_function(run)(logits, y, teacher_logits(run, x))
        total = torch.where(self.alive, losses, 0).sum()
        grads = torch.autograd.grad(total, self.params)
        with torch.no_grad():
            lr = self.lrs.index_select(0, self.step.view(1))
            momentum = self.momenta.index_select(0, self.step.view(1))
            for p, g, buf in zip(self.params, grads, self.buffers, strict=True):
                g = torch.where(self.alive.view(-1, *([1] * (g.dim() - 1))), g, 0)
                if self.weight_decay:
                    g = g.add(p, alpha=self.weight_decay)
                buf.mul_(momentum).add_(g)
                p.sub_((g + buf * momentum if self.nesterov else buf) * lr)
            if self.average_weights is not None:
                w = self.average_weights.index_select(0, self.step.view(1))
                live = [*run.net.parameters(), *run.net.buffers()]
                for a, c in zip(self._averaged(), live, strict=True):
                    if a.is_floating_point():
                        a.add_((c - a) * w)
                    else:  # BatchNorm's batch count, averaged and truncated as AveragedModel does
                        a.copy_(a * (1 - w) + c * w)
            self.loss_sum += losses.detach() * width
            self.correct += (logits.argmax(-1) == y).sum(1)
            self.step += 1
            self.i += 1

    def _capture(self) -> None:
        """Warm up on a side stream (lazy initialisation must not happen during capture),
        put every state back as it was, then capture one full step."""
        state = [
            *self.params,
            *self.run.net.buffers(),
            *self.buffers,
            *self._averaged(),
            self.loss_sum,
            self.correct,
            self.step,
            self.i,
        ]
        saved = [t.detach().clone() for t in state]
        rng = torch.cuda.get_rng_state(self.run.device)
        stream = torch.cuda.Stream(self.run.device)
        stream.wait_stream(torch.cuda.current_stream(self.run.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step(self.batch)
        torch.cuda.current_stream(self.run.device).wait_stream(stream)
        with torch.no_grad():
            for t, before in zip(state, saved, strict=True):
                t.copy_(before)
        torch.cuda.set_rng_state(rng, self.run.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step(self.batch)
        self.i.zero_()  # capture records the step but does not run it
        log.info("the step of %d copies is captured as one CUDA graph", len(self.run.copies))

    def train_epoch(self, run: StackedRun) -> tuple[list[float], list[float]]:
        """One epoch of every live copy; each copy's (mean loss, accuracy %), as
        stack/fit.py's train_epoch_stacked returns them."""
        run.net.train()
        n = run.data.n_train
        full, rest = divmod(n, self.batch)
        self.perms.copy_(
            torch.stack(
                [torch.randperm(n, device=run.device, generator=c.generator) for c in run.copies]
            )
        )
        self.alive.copy_(run.alive())
        self.loss_sum.zero_()
        self.correct.zero_()
        if self.graph is None and run.device.type == "cuda":
            self._capture()
        self.i.zero_()
        for _ in range(full):  # elsewhere (a test on a CPU) the same step, eagerly
            self.graph.replay() if self.graph is not None else self._step(self.batch)
        if rest:
            self._step(rest)
        steps = full + (1 if rest else 0)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": by design
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(steps):  # the host's schedule and average follow the device's
                run.scheduler.step()
        if run.average is not None:
            before = run.average.step
            run.average.step += steps
            updates = max(0, run.average.step - max(before, run.average.first_step - 1))
            run.average.averaged.n_averaged += updates
        losses = (self.loss_sum / n).tolist()
        return losses, [c * 100.0 / n for c in self.correct.tolist()]
