"""Training and prediction throughput of ``CKDNetClassifier`` against plain PyTorch.

Three measurements, each a ratio of two things timed side by side in one
process (interleaved A, B, A, B, ..., best of ``--repeats`` after a
warm-up), so that load from other processes hits both sides alike:

``compare`` (default)
    ``CKDNetClassifier.fit`` / ``predict_proba`` against a hand-written
    PyTorch loop with the same module class, data, batch size, epochs,
    optimizer, loss and torch threads. Two baselines: the loop as usually
    written (NCHW tensors, ``torch.no_grad``, the training batch size for
    prediction) and the same loop given every lever ckdlearn uses
    (channels-last weights, ``torch.inference_mode``), which isolates
    ckdlearn's own overhead. Target: >= 0.95.
``levers``
    Each speed lever of the estimator switched on and off alone: the
    channels-last layout, slicing batches from memory instead of skorch's
    per-sample Dataset + DataLoader, ``inference_mode``, a larger
    prediction batch (``iterator_valid__batch_size``; measured, not made
    the default), bf16 autocast, and (for information) the cost of
    the default CT augmentation.
``grid``
    ``GridSearchCV`` over a SMOTE + CKDNetClassifier pipeline with
    ``n_jobs=1`` and ``n_jobs=2``, and the torch / BLAS / OpenMP threads
    each joblib worker runs with (oversubscription check).

Usage::

    python benchmarks/bench_training.py                  # compare, default CKDNet at 128 px
    python benchmarks/bench_training.py --preset small   # 32 px, width 8, depth 3
    python benchmarks/bench_training.py --mode levers --preset small
    python benchmarks/bench_training.py --mode grid

Images are random float32 in [0, 1]: throughput does not depend on pixel
values. ``--json PATH`` also writes the raw figures.
"""

import argparse
import inspect
import json
import os
import platform
import sys
import warnings

import numpy as np
import torch

from common import interleaved_best_of, random_slices


def _ckdnet_default(name):
    from ckdlearn.nets import CKDNet

    return inspect.signature(CKDNet).parameters[name].default


PRESETS = {
    # The default CKDNet on 128 x 128 slices: what the design's example trains.
    "default": dict(
        image_size=128, width=_ckdnet_default("width"), depth=_ckdnet_default("depth"), n_fit=128, n_predict=256
    ),
    # A small net on small images, where per-batch overhead weighs most.
    "small": dict(image_size=32, width=8, depth=3, n_fit=512, n_predict=2048),
}


# --- the hand-written PyTorch loop ---------------------------------------------


def plain_fit(X, y, *, image_size, width, depth, batch_size, epochs, lr, channels_last, seed=0):
    """Train CKDNet the way a hand-written loop does: tensors in memory,
    a fresh permutation each epoch (CKDNetClassifier shuffles too), AdamW,
    cross-entropy."""
    from ckdlearn.nets import CKDNet

    torch.manual_seed(seed)
    model = CKDNet(in_channels=1, n_classes=4, width=width, depth=depth)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.from_numpy(X).view(len(X), 1, image_size, image_size)
    targets = torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images))
        for start in range(0, len(images), batch_size):
            rows = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = criterion(model(images[rows]), targets[rows])
            loss.backward()
            optimizer.step()
    return model


def plain_predict_proba(model, X, *, image_size, batch_size, inference_mode):
    images = torch.from_numpy(X).view(len(X), 1, image_size, image_size)
    model.eval()
    context = torch.inference_mode if inference_mode else torch.no_grad
    chunks = []
    with context():
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size])
            chunks.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(chunks)


def copy_module(source, channels_last, width, depth):
    from ckdlearn.nets import CKDNet

    model = CKDNet(in_channels=1, n_classes=4, width=width, depth=depth)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.load_state_dict(source.state_dict())
    return model.eval()


def estimator(args, **params):
    from ckdlearn import CKDNetClassifier

    defaults = dict(
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        module__width=args.width,
        module__depth=args.depth,
        augment=None,
        label_smoothing=0.0,  # the plain loop's loss
        random_state=0,
    )
    channels_last = params.pop("_channels_last", True)
    clf = CKDNetClassifier(**{**defaults, **params})
    clf._channels_last = channels_last
    return clf


# --- modes ------------------------------------------------------------------------


def run_compare(args):
    X_fit, y_fit = random_slices(args.n_fit, args.image_size)
    X_pred, _ = random_slices(args.n_predict, args.image_size, seed=1)
    common = dict(image_size=args.image_size, width=args.width, depth=args.depth)
    fit_kwargs = dict(common, batch_size=args.batch_size, epochs=args.epochs, lr=1e-3)

    fit_times = interleaved_best_of(
        {
            "ckdlearn": lambda: estimator(args).fit(X_fit, y_fit),
            "plain": lambda: plain_fit(X_fit, y_fit, channels_last=False, **fit_kwargs),
            "plain_levers": lambda: plain_fit(X_fit, y_fit, channels_last=True, **fit_kwargs),
        },
        args.repeats,
    )

    clf = estimator(args).fit(X_fit, y_fit)
    plain = copy_module(clf.module_, False, args.width, args.depth)
    plain_levers = copy_module(clf.module_, True, args.width, args.depth)
    predict_kwargs = dict(image_size=args.image_size)
    # Same module, same answers (within float rounding of the layouts).
    np.testing.assert_allclose(
        clf.predict_proba(X_pred[:64]),
        plain_predict_proba(plain, X_pred[:64], batch_size=args.batch_size, inference_mode=False, **predict_kwargs),
        atol=1e-5,
    )
    predict_times = interleaved_best_of(
        {
            "ckdlearn": lambda: clf.predict_proba(X_pred),
            "plain": lambda: plain_predict_proba(
                plain, X_pred, batch_size=args.batch_size, inference_mode=False, **predict_kwargs
            ),
            "plain_levers": lambda: plain_predict_proba(
                plain_levers, X_pred, batch_size=args.batch_size, inference_mode=True, **predict_kwargs
            ),
        },
        args.repeats,
    )
    n_fit = args.n_fit * args.epochs
    rates = {
        "fit": {name: n_fit / seconds for name, seconds in fit_times.items()},
        "predict": {name: args.n_predict / seconds for name, seconds in predict_times.items()},
    }
    print(f"\n| phase | ckdlearn (slices/s) | plain loop (slices/s) | ratio | plain loop + same levers (slices/s) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for phase, rate in rates.items():
        print(
            f"| {phase} | {rate['ckdlearn']:.1f} | {rate['plain']:.1f} | "
            f"{rate['ckdlearn'] / rate['plain']:.2f} | {rate['plain_levers']:.1f} | "
            f"{rate['ckdlearn'] / rate['plain_levers']:.2f} |"
        )
    return rates


def run_levers(args):
    import skorch

    X_fit, y_fit = random_slices(args.n_fit, args.image_size)
    X_pred, _ = random_slices(args.n_predict, args.image_size, seed=1)
    n_fit = args.n_fit * args.epochs
    rows = []

    def fit_pair(name, on, off):
        times = interleaved_best_of(
            {"on": lambda: estimator(args, **on).fit(X_fit, y_fit), "off": lambda: estimator(args, **off).fit(X_fit, y_fit)},
            args.repeats,
        )
        rows.append(("fit", name, n_fit / times["on"], n_fit / times["off"]))

    def predict_pair(name, on_clf, off_call):
        times = interleaved_best_of({"on": lambda: on_clf.predict_proba(X_pred), "off": off_call}, args.repeats)
        rows.append(("predict", name, args.n_predict / times["on"], args.n_predict / times["off"]))

    fit_pair("channels-last weights (vs NCHW)", {}, {"_channels_last": False})
    fit_pair(
        "batches sliced from memory (vs skorch Dataset + DataLoader)",
        {},
        {"iterator_train__num_workers": 0},  # any DataLoader-only argument selects the DataLoader
    )
    fit_pair("bf16 autocast (vs float32)", {"precision": "bf16"}, {})
    fit_pair(
        "channels-last weights under bf16 (vs NCHW under bf16)",
        {"precision": "bf16"},
        {"precision": "bf16", "_channels_last": False},
    )
    fit_pair("augment='ct' (vs None): its cost", {"augment": "ct"}, {})

    default = estimator(args).fit(X_fit, y_fit)
    nchw = estimator(args, _channels_last=False).fit(X_fit, y_fit)
    predict_pair("channels-last weights (vs NCHW)", default, lambda: nchw.predict_proba(X_pred))
    dataloader_clf = estimator(args, iterator_valid__num_workers=0).fit(X_fit, y_fit)
    dataloader_clf.module_.load_state_dict(default.module_.state_dict())
    predict_pair(
        "batches sliced from memory (vs skorch Dataset + DataLoader)",
        default,
        lambda: dataloader_clf.predict_proba(X_pred),
    )
    large_batch = estimator(args, iterator_valid__batch_size=4 * args.batch_size).fit(X_fit, y_fit)
    large_batch.module_.load_state_dict(default.module_.state_dict())
    predict_pair(
        f"prediction batch {4 * args.batch_size} (vs {args.batch_size}): not kept",
        large_batch,
        lambda: default.predict_proba(X_pred),
    )
    images = default.to_images(X_pred)
    predict_pair(
        "inference_mode, eval mode set once (vs no_grad, train(False) per batch)",
        default,
        lambda: skorch.NeuralNetClassifier.predict_proba(default, images),
    )
    bf16 = estimator(args, precision="bf16").fit(X_fit, y_fit)
    bf16.module_.load_state_dict(default.module_.state_dict())
    predict_pair("bf16 autocast (vs float32)", bf16, lambda: default.predict_proba(X_pred))
    bf16_nchw = estimator(args, precision="bf16", _channels_last=False).fit(X_fit, y_fit)
    bf16_nchw.module_.load_state_dict(default.module_.state_dict())
    predict_pair(
        "channels-last weights under bf16 (vs NCHW under bf16)",
        bf16,
        lambda: bf16_nchw.predict_proba(X_pred),
    )

    print("\n| phase | lever | with (slices/s) | without (slices/s) | speed-up |")
    print("|---|---|---:|---:|---:|")
    for phase, name, on, off in rows:
        print(f"| {phase} | {name} | {on:.1f} | {off:.1f} | {on / off:.2f} |")
    return [dict(phase=p, lever=n, on=a, off=b) for p, n, a, b in rows]


def _probe_threads(_):
    from threadpoolctl import threadpool_info

    return (
        os.getpid(),
        torch.get_num_threads(),
        tuple(sorted((pool["internal_api"], pool["num_threads"]) for pool in threadpool_info())),
    )


def run_grid(args):
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import make_pipeline
    from joblib import Parallel, delayed, parallel_config
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    # loky restarts its workers when the thread limits change between
    # sides, and says so; that is expected here.
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs")

    X, y = random_slices(args.grid_n, args.image_size)
    grid = {"ckdnetclassifier__lr": [1e-3, 3e-3], "ckdnetclassifier__module__width": [args.width, 2 * args.width]}

    def search(n_jobs, inner_threads=None):
        pipe = make_pipeline(SMOTE(random_state=0), estimator(args))
        with parallel_config(backend="loky", inner_max_num_threads=inner_threads):
            return GridSearchCV(pipe, grid, cv=StratifiedKFold(2), n_jobs=n_jobs, refit=False).fit(X, y)

    # joblib's default for loky workers, and what oversubscription would be:
    # each of the two workers running as many threads as there are cores.
    cores = os.cpu_count()
    sides = {
        "n_jobs=1": (1, None),
        "n_jobs=2": (2, None),
        f"n_jobs=2, {cores} threads per worker (oversubscribed)": (2, cores),
    }
    threads = {}
    for name, (n_jobs, inner_threads) in sides.items():
        with parallel_config(backend="loky", inner_max_num_threads=inner_threads):
            probes = Parallel(n_jobs=n_jobs)(delayed(_probe_threads)(i) for i in range(4))
        threads[name] = sorted(set(probes))
    times = interleaved_best_of(
        {name: (lambda n=n_jobs, t=inner: search(n, t)) for name, (n_jobs, inner) in sides.items()},
        args.repeats,
    )
    n_fits = 2 * 4
    print("\n| GridSearchCV (8 fits) | seconds | fits/s | vs n_jobs=1 | torch threads per worker | BLAS/OpenMP pools per worker |")
    print("|---|---:|---:|---:|---:|---|")
    for name in sides:
        seconds = times[name]
        workers = threads[name]
        print(
            f"| {name} | {seconds:.1f} | {n_fits / seconds:.2f} | {times['n_jobs=1'] / seconds:.2f} | "
            f"{', '.join(str(w[1]) for w in workers)} | "
            f"{'; '.join(', '.join(f'{api}={n}' for api, n in w[2]) for w in workers)} |"
        )
    return {"seconds": times, "threads": {str(k): v for k, v in threads.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["compare", "levers", "grid"], default="compare")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--depth", type=int)
    parser.add_argument("--n-fit", type=int, help="training slices per epoch")
    parser.add_argument("--n-predict", type=int, help="slices to predict")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--grid-n", type=int, default=2000, help="slices for --mode grid")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.mode == "grid" and args.preset == "default" and args.image_size == 128:
        # The grid runs 8 fits twice per repeat: small images keep it short.
        args.image_size, args.width, args.depth = 32, 8, 3
    torch.set_num_threads(args.threads)

    print(
        f"# {args.mode}: {args.image_size}x{args.image_size} px, CKDNet(width={args.width}, "
        f"depth={args.depth}), batch {args.batch_size}, {args.epochs} epoch(s), "
        f"{args.threads} torch threads, best of {args.repeats}"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print("# command: python benchmarks/bench_training.py " + " ".join(sys.argv[1:] if argv is None else argv))
    figures = {"compare": run_compare, "levers": run_levers, "grid": run_grid}[args.mode](args)
    print(f"# load average after: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "figures": figures}, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
