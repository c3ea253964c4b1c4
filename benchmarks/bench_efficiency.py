"""How close ``CKDNetClassifier`` inference (and training) runs to this machine's limit.

Efficiency = model FLOPs per slice (counted with
``torch.utils.flop_counter.FlopCounterMode``) x slices/s, divided by the
matrix-multiply peak of the same machine, measured in the same run (a
square ``torch.mm`` in float32, and in bfloat16, with the same torch
threads). The peak and the estimator's throughput are timed interleaved,
best of ``--repeats``, so load from other processes hits both alike.

Target: >= 40% of the float32 peak for ``predict_proba`` of the default
CKDNet (``--width``/``--depth`` default to its defaults) on 128 x 128
slices.

Usage::

    python benchmarks/bench_efficiency.py [--image-size 128] [--width 32] [--depth 4]

Training efficiency is reported too: FLOPs of a forward plus backward pass
per slice (the counter sees both) x training slices/s.
"""

import argparse
import inspect
import os
import platform
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from ckdlearn.nets import CKDNet


def flops_per_slice(module, image_shape, training):
    """FLOPs of one slice: forward only, or forward + backward."""
    module.train(training)
    image = torch.rand(1, *image_shape)
    with FlopCounterMode(display=False) as counter:
        if training:
            module(image).sum().backward()
        else:
            with torch.no_grad():
                module(image)
    module.zero_grad(set_to_none=True)
    module.eval()
    return counter.get_total_flops()


def matmul_seconds(size, dtype, calls):
    a = torch.rand(size, size, dtype=dtype)
    b = torch.rand(size, size, dtype=dtype)

    def run():
        for _ in range(calls):
            torch.mm(a, b)

    return run, 2 * size**3 * calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    # The default CKDNet unless told otherwise.
    parser.add_argument("--width", type=int, default=inspect.signature(CKDNet).parameters["width"].default)
    parser.add_argument("--depth", type=int, default=inspect.signature(CKDNet).parameters["depth"].default)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-predict", type=int, default=128)
    parser.add_argument("--n-fit", type=int, default=64)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import interleaved_best_of, random_slices

    from ckdlearn import CKDNetClassifier

    size = args.image_size
    X_fit, y_fit = random_slices(args.n_fit, size)
    X_pred, _ = random_slices(args.n_predict, size, seed=1)

    def estimator(precision="32"):
        return CKDNetClassifier(
            max_epochs=1,
            batch_size=args.batch_size,
            module__width=args.width,
            module__depth=args.depth,
            augment=None,
            precision=precision,
            random_state=0,
        )

    fp32 = estimator().fit(X_fit, y_fit)
    bf16 = estimator("bf16").fit(X_fit, y_fit)
    bf16.module_.load_state_dict(fp32.module_.state_dict())
    image_shape = fp32.image_shape_
    predict_flops = flops_per_slice(fp32.module_, image_shape, training=False)
    train_flops = flops_per_slice(fp32.module_, image_shape, training=True)

    mm32, mm32_flops = matmul_seconds(args.matmul_size, torch.float32, 2)
    mm16, mm16_flops = matmul_seconds(args.matmul_size, torch.bfloat16, 8)
    times = interleaved_best_of(
        {
            "peak fp32": mm32,
            "peak bf16": mm16,
            "predict fp32": lambda: fp32.predict_proba(X_pred),
            "predict bf16": lambda: bf16.predict_proba(X_pred),
            "fit fp32": lambda: estimator().fit(X_fit, y_fit),
            "fit bf16": lambda: estimator("bf16").fit(X_fit, y_fit),
        },
        args.repeats,
    )
    peak32 = mm32_flops / times["peak fp32"]
    peak16 = mm16_flops / times["peak bf16"]

    print(
        f"# {size}x{size} px, CKDNet(width={args.width}, depth={args.depth}), batch "
        f"{args.batch_size}, {args.threads} torch threads, best of {args.repeats}; "
        f"matmul {args.matmul_size}x{args.matmul_size}"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("# command: python benchmarks/bench_efficiency.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"\nmodel: {predict_flops / 1e9:.3f} GFLOP per slice forward, {train_flops / 1e9:.3f} forward + backward")
    print(f"matmul peak: {peak32 / 1e9:.1f} GFLOP/s float32, {peak16 / 1e9:.1f} GFLOP/s bfloat16 (measured now)\n")
    print("| phase | precision | slices/s | GFLOP/s | % of fp32 peak | % of bf16 peak |")
    print("|---|---|---:|---:|---:|---:|")
    for phase, n, flops in (("predict", args.n_predict, predict_flops), ("fit", args.n_fit, train_flops)):
        for precision in ("fp32", "bf16"):
            rate = n / times[f"{phase} {precision}"]
            achieved = rate * flops
            print(
                f"| {phase} | {precision} | {rate:.1f} | {achieved / 1e9:.1f} | "
                f"{100 * achieved / peak32:.0f}% | {100 * achieved / peak16:.0f}% |"
            )
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
