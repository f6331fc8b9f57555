"""Per-op cost of the three ways to hold K seeds' MLPs (issue 17): forward + backward + Adam step.

(a) ``[K, ...]`` leaves, ``torch.baddbmm``; (b) ``torch.func.stack_module_state`` + ``vmap``;
(c) per-seed leaves stacked by ``torch.stack`` inside the forward, one Adam over all leaves
(foreach); the same leaves with torch's default single-tensor Adam loop, and with fused Adam;
(d) one flat leaf per seed (what ``rlopt.stacked.networks`` uses), stacked once per forward.
One thread, batch 256, obs 4 → 64 → 64 → 2, tanh. Prints the median CPU µs per iteration and per seed.

``--kernels``: instead, the single kernels ``rlopt.stacked.tanh_mlp`` chooses between, median µs per call on
``[K, B, 64]`` activations (B = 256, PPO's minibatch; B = 40, A2C's batch): tanh as ``torch.tanh``, as
2σ(2x) − 1 in four passes and in three (the doubling inside the ``baddbmm``); a first layer's weight gradient
(4 inputs) as ``gᵀ h`` and as ``(hᵀ g)ᵀ``; a single-output layer's input gradient as a 1-column ``bmm`` and
as a broadcast product.

    python scripts/bench_stacked_ops.py [--ks 1 4 10 20] [--iters 300] [--kernels]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn


def lone_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))


def forward_a(weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
        if i < len(weights) - 1:
            x = torch.tanh(x)
    return x


def timed(step, iters: int) -> float:
    """Median CPU time over 10 blocks of ``iters // 10`` calls (on a shared machine, CPU time and the
    median resist the other processes best)."""
    for _ in range(20):
        step()
    blocks = []
    for _ in range(10):
        start = time.process_time()
        for _ in range(max(iters // 10, 1)):
            step()
        blocks.append((time.process_time() - start) / max(iters // 10, 1))
    return statistics.median(blocks) * 1e6


def bench(k: int, iters: int) -> dict[str, float]:
    nets = [lone_mlp() for _ in range(k)]
    x = torch.randn(k, 256, 4)
    target = torch.randn(k, 256, 2)
    out: dict[str, float] = {}

    # (a) stacked leaves
    weights = [nn.Parameter(torch.stack([n[i].weight.detach() for n in nets])) for i in (0, 2, 4)]
    biases = [nn.Parameter(torch.stack([n[i].bias.detach() for n in nets])) for i in (0, 2, 4)]
    opt_a = torch.optim.Adam(weights + biases, lr=1e-3)

    def step_a() -> None:
        opt_a.zero_grad(set_to_none=True)
        ((forward_a(weights, biases, x) - target).pow(2).mean((1, 2)).sum()).backward()
        opt_a.step()

    out["a_baddbmm"] = timed(step_a, iters)

    # (b) functorch
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state(copy.deepcopy(nets))
    params = {name: nn.Parameter(p) for name, p in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")
    opt_b = torch.optim.Adam(list(params.values()), lr=1e-3)

    def call(p, bufs, xs):
        return functional_call(base, (p, bufs), (xs,))

    batched = vmap(call)

    def step_b() -> None:
        opt_b.zero_grad(set_to_none=True)
        ((batched(params, buffers, x) - target).pow(2).mean((1, 2)).sum()).backward()
        opt_b.step()

    out["b_vmap"] = timed(step_b, iters)

    # (c) per-seed leaves, stacked in forward
    leaves = [[n[i].weight for n in nets] for i in (0, 2, 4)], [[n[i].bias for n in nets] for i in (0, 2, 4)]
    all_leaves = [p for n in nets for p in n.parameters()]

    def make_step_c(opt: torch.optim.Optimizer):
        def step_c() -> None:
            opt.zero_grad(set_to_none=True)
            ws = [torch.stack(layer) for layer in leaves[0]]
            bs = [torch.stack(layer) for layer in leaves[1]]
            ((forward_a(ws, bs, x) - target).pow(2).mean((1, 2)).sum()).backward()
            opt.step()

        return step_c

    out["c_stack_foreach"] = timed(make_step_c(torch.optim.Adam(all_leaves, lr=1e-3, foreach=True)), iters)
    out["c_stack_loop"] = timed(make_step_c(torch.optim.Adam(all_leaves, lr=1e-3)), iters)
    out["c_stack_fused"] = timed(make_step_c(torch.optim.Adam(all_leaves, lr=1e-3, fused=True)), iters)

    # (d) one flat leaf per seed (rlopt.stacked.networks): one stack per forward, K tensors in Adam
    flats = [nn.Parameter(torch.cat([p.detach().reshape(-1) for p in n.parameters()])) for n in nets]
    offsets = [0]
    for n_ in nets[0].parameters():
        offsets.append(offsets[-1] + n_.numel())
    shapes = [p.shape for p in nets[0].parameters()]
    opt_d = torch.optim.Adam(flats, lr=1e-3, foreach=True)

    def step_d() -> None:
        opt_d.zero_grad(set_to_none=True)
        stacked = torch.stack(flats)
        views = [stacked[:, a:b].view(k, *shape) for a, b, shape in zip(offsets[:-1], offsets[1:], shapes)]
        ((forward_a(views[0::2], views[1::2], x) - target).pow(2).mean((1, 2)).sum()).backward()
        opt_d.step()

    out["d_flat_per_seed"] = timed(step_d, iters)

    # lone reference: K separate forward/backward/step
    opts = [torch.optim.Adam(n.parameters(), lr=1e-3) for n in nets]

    def step_lone() -> None:
        for n, opt, xi, ti in zip(nets, opts, x, target):
            opt.zero_grad(set_to_none=True)
            ((n(xi) - ti).pow(2).mean()).backward()
            opt.step()

    out["lone_x_K"] = timed(step_lone, iters)
    return out


def kernels(k: int, rows: int, iters: int) -> dict[str, float]:
    """Median µs per call of each kernel choice (module docstring) at ``[k, rows, 64]``."""
    x4, h = torch.randn(k, rows, 4), torch.randn(k, rows, 64)
    grad, grad_one = torch.randn(k, rows, 64), torch.randn(k, rows, 1)
    weight, weight_one, bias = torch.randn(k, 64, 64), torch.randn(k, 1, 64), torch.randn(k, 1, 64)
    minus_one, weight_t = torch.tensor(-1.0), weight.transpose(1, 2)

    def three_pass() -> None:
        z = torch.baddbmm(bias, h, weight_t, beta=2.0, alpha=2.0).sigmoid_()
        torch.add(minus_one, z, alpha=2.0, out=z)

    calls = {
        "tanh(baddbmm)": lambda: torch.tanh(torch.baddbmm(bias, h, weight_t)),
        "4-pass 2σ(2x)−1": lambda: torch.mul(torch.baddbmm(bias, h, weight_t), 2.0).sigmoid_().mul_(2.0).sub_(1.0),
        "3-pass 2σ(2x)−1": three_pass,
        "dW gᵀh (4 in)": lambda: torch.bmm(grad.transpose(1, 2), x4),
        "dW (hᵀg)ᵀ (4 in)": lambda: torch.bmm(x4.transpose(1, 2), grad).transpose(1, 2).reshape(k, -1),
        "dX bmm (1 out)": lambda: torch.bmm(grad_one, weight_one),
        "dX g⊙W (1 out)": lambda: grad_one * weight_one,
    }
    out = {}
    for name, call in calls.items():
        samples = []
        for _ in range(iters):
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1e6)
        out[name] = statistics.median(samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 10, 20], help="stack sizes (1..64)")
    parser.add_argument("--iters", type=int, default=300, help="timed iterations per measurement (1..100000)")
    parser.add_argument("--kernels", action="store_true", help="time the kernel choices instead (docstring)")
    args = parser.parse_args()
    if any(not 1 <= k <= 64 for k in args.ks):
        parser.error(f"--ks: every K must be in 1..64, got {args.ks}")
    if not 1 <= args.iters <= 100_000:
        parser.error(f"--iters: must be in 1..100000, got {args.iters}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.kernels:
        for rows in (256, 40):
            names = list(kernels(1, rows, 3))
            print(f"B = {rows}: median µs per call\n{'K':>3} " + " ".join(f"{name:>17}" for name in names))
            for k in args.ks:
                print(f"{k:>3} " + " ".join(f"{v:17.1f}" for v in kernels(k, rows, args.iters).values()))
        return
    print(f"{'K':>3} " + " ".join(f"{name:>16}" for name in bench(1, 5)))
    for k in args.ks:
        row = bench(k, args.iters)
        print(f"{k:>3} " + " ".join(f"{v:9.0f} ({v / k:4.0f})" for v in row.values()))
    print("µs per iteration (µs per seed)")


if __name__ == "__main__":
    main()
