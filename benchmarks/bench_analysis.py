"""Analysis speed against naive baselines, measured in the same run.

1. Batched Grad-CAM for 1,000 images, teacher and student, vs a per-image loop calling captum's
   LayerGradCam (target: >= 10x, same maps: max abs difference < 1e-5).
2. Minibatch CKA for every layer pair of a resnet20 teacher x resnet8 student over 5,000 samples,
   vs a per-pair loop that makes its own pass over the data for each pair, recomputing the
   features and both Gram matrices (target: >= 10x, same values; memory O(batch²)); and side by
   side, in the same run, with the float64 path of the same call and with the CKA packages
   ``pytorch-cka``, ``torch_cka`` and ``ckatorch`` where installed (``pip install pytorch-cka
   torch_cka ckatorch``; optional, benchmark only), target >= 1.2x ``pytorch-cka``.
3. A 2-D loss landscape, 21 x 21 grid on 1,000 samples, for resnet8 (target: <= 30 s here).

    python benchmarks/bench_analysis.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import load_note, machine, write_section  # noqa: E402

from workbench.analysis import MinibatchCKA, cka_matrix, compute_cams, landscape_2d  # noqa: E402
from workbench.analysis.objectives import cross_entropy  # noqa: E402
from workbench.data import load_dataset  # noqa: E402
from workbench.models import as_channels_last, channels_last, create_model, fold_batchnorm, model_info  # noqa: E402
from workbench.models.taps import capture, last_conv_layer, penultimate_layer, stage_layers  # noqa: E402


def _models(in_ch: int, size: int, classes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    teacher = create_model("resnet20", num_classes=classes, in_channels=in_ch, image_size=size).eval()
    student = create_model("resnet8", num_classes=classes, in_channels=in_ch, image_size=size).eval()
    return teacher, student


def bench_gradcam(
    images: torch.Tensor, labels: torch.Tensor, models: list[torch.nn.Module], repeats: int = 3
) -> dict[str, float]:
    """Median over ``repeats`` alternating timings of both sides (this machine's speed drifts)."""
    from captum.attr import LayerAttribution, LayerGradCam

    from workbench.models.taps import get_module

    def loop() -> list[torch.Tensor]:
        loop_maps = []
        for m in models:
            layer = get_module(m, last_conv_layer(m))
            algo = LayerGradCam(m, layer)
            maps = []
            for i in range(len(images)):
                a = algo.attribute(images[i : i + 1], target=int(labels[i]), relu_attributions=True)
                maps.append(
                    LayerAttribution.interpolate(
                        a, tuple(images.shape[-2:]), interpolate_mode="bilinear"
                    ).detach()
                )
            loop_maps.append(torch.cat(maps)[:, 0])
        return loop_maps

    def forward_only() -> None:
        # the floor of our batched CAM: one inference forward per image of the same BN-folded,
        # channels-last networks, at the same batch size
        for m in models:
            folded, _ = fold_batchnorm(m)
            with channels_last(folded), torch.inference_mode():
                for start in range(0, len(images), 256):
                    folded(as_channels_last(images[start : start + 256]))

    ours, theirs, floor = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        batched = [compute_cams(m, images, method="gradcam", target=labels) for m in models]
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop_maps = loop()
        theirs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        forward_only()
        floor.append(time.perf_counter() - t0)
    t_batched, t_loop = statistics.median(ours), statistics.median(theirs)
    t_floor = statistics.median(floor)
    size = tuple(images.shape[-2:])
    ours = [
        LayerAttribution.interpolate(
            torch.as_tensor(b.raw).clamp_min(0)[:, None], size, interpolate_mode="bilinear"
        )[:, 0]
        for b in batched
    ]  # the same recipe as captum's: ReLU at the layer's resolution, then bilinear upsampling
    diff = max(float((o - lm).abs().max()) for o, lm in zip(ours, loop_maps, strict=True))
    return {
        "batched": t_batched,
        "loop": t_loop,
        "speedup": t_loop / t_batched,
        "max_abs_diff": diff,
        "forward": t_floor,
        "ceiling": t_loop / t_floor,
    }


EXACT = {"precision": "float64", "fold_bn": False, "memory_format": "contiguous"}


def _peer_runs(
    images: torch.Tensor, teacher: torch.nn.Module, student: torch.nn.Module, la: list, lb: list, batch: int
) -> dict[str, Callable[[], torch.Tensor]]:
    """The installed CKA packages, each called through its documented API on copies of the models
    (they register hooks of their own), same layers, batches and samples as ours."""
    import copy
    import warnings

    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(images), batch_size=batch, shuffle=False)
    runs: dict[str, Callable[[], torch.Tensor]] = {}
    try:
        from cka import compute_cka  # pytorch-cka

        def run_pytorch_cka() -> torch.Tensor:
            t, s = copy.deepcopy(teacher), copy.deepcopy(student)
            return compute_cka(t, s, loader, layers=la, model2_layers=lb, device="cpu", progress=False)[0]

        runs["pytorch-cka"] = run_pytorch_cka
    except ImportError:
        pass
    try:
        from torch_cka import CKA as TorchCKA

        def run_torch_cka() -> torch.Tensor:
            t, s = copy.deepcopy(teacher), copy.deepcopy(student)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cka = TorchCKA(t, s, model1_name="t", model2_name="s", model1_layers=la, model2_layers=lb)
                cka.compare(loader)  # as documented: no torch.no_grad() of its own
            return cka.export()["CKA"]

        runs["torch_cka"] = run_torch_cka
    except ImportError:
        pass
    try:
        from ckatorch.core import cka_batch

        def run_ckatorch() -> torch.Tensor:
            # ckatorch's CKA class expects (batch, tokens, dim) features; for conv features its
            # minibatch kernel cka_batch is applied to each pair of (1, n, features) batches, and the
            # per-batch values are averaged (its own class keeps only the last batch's value)
            out = torch.zeros(len(la), len(lb), dtype=torch.float64)
            for start in range(0, len(images), batch):
                x = images[start : start + batch]
                _, fa = capture(teacher, x, la)
                _, fb = capture(student, x, lb)
                for i, a in enumerate(la):
                    for j, b in enumerate(lb):
                        out[i, j] += cka_batch(fa[a].reshape(1, len(x), -1), fb[b].reshape(1, len(x), -1))
            return out / -(-len(images) // batch)

        runs["ckatorch"] = run_ckatorch
    except ImportError:
        pass
    return runs


def bench_cka(
    images: torch.Tensor,
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    batch: int,
    repeats: int = 2,
    loop: bool = True,
) -> dict[str, Any]:
    """Ours (defaults and the float64 path), the installed CKA packages and the per-pair loop.

    Ours, its float64 path and ``pytorch-cka`` are timed ``repeats`` times, interleaved (median);
    the other packages once, in between (this machine's speed drifts with its load).
    """
    shape = tuple(images.shape[1:])
    la = [*stage_layers(teacher, shape), penultimate_layer(teacher)]
    lb = [*stage_layers(student, shape), penultimate_layer(student)]
    layers = {"teacher": la, "student": lb}
    peers = _peer_runs(images, teacher, student, la, lb, batch)
    times: dict[str, list[float]] = {}
    values: dict[str, torch.Tensor] = {}

    def timed(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append(time.perf_counter() - t0)
        values[name] = torch.as_tensor(out, dtype=torch.float64)

    for r in range(repeats):
        timed("ours", lambda: cka_matrix(teacher, student, images, layers=layers, batch_size=batch).matrix)
        if "pytorch-cka" in peers:
            timed("pytorch-cka", peers["pytorch-cka"])
        timed("float64", lambda: cka_matrix(teacher, student, images, layers=layers, batch_size=batch, **EXACT).matrix)
        if r == 0:
            for name in ("torch_cka", "ckatorch"):
                if name in peers:
                    timed(name, peers[name])
    fast = values["ours"]
    t_fast = statistics.median(times["ours"])
    side = {
        name: {
            "seconds": statistics.median(ts),
            "ratio": statistics.median(ts) / t_fast,
            "diff": float((values[name] - values["float64"]).abs().max()),
            "runs": len(ts),
        }
        for name, ts in times.items()
    }
    if not loop:
        return {"fast": t_fast, "pairs": len(la) * len(lb), "side": side}
    t0 = time.perf_counter()
    slow = torch.zeros(len(la), len(lb), dtype=torch.float64)
    for i, a in enumerate(la):
        for j, b in enumerate(lb):
            acc = MinibatchCKA([a], [b], debiased=True)
            for start in range(0, len(images), batch):
                x = images[start : start + batch]
                _, fa = capture(teacher, x, [a])
                _, fb = capture(student, x, [b])
                acc.update(fa, fb)
            slow[i, j] = float(acc.compute()[0, 0])
    t_slow = time.perf_counter() - t0
    diff = float((torch.as_tensor(fast) - slow).abs().max())
    return {
        "fast": t_fast,
        "loop": t_slow,
        "speedup": t_slow / t_fast,
        "max_abs_diff": diff,
        "pairs": len(la) * len(lb),
        "side": side,
    }


def bench_landscape(
    images: torch.Tensor, labels: torch.Tensor, model: torch.nn.Module, steps: int
) -> dict[str, float]:
    out = {}
    for name, options in (("plain", {"memory_format": "contiguous", "fold_bn": False}), ("auto", {})):
        t0 = time.perf_counter()
        landscape_2d(None, model, images, labels, objectives={"ce": cross_entropy}, steps=steps, **options)
        out[name] = time.perf_counter() - t0
    return out


def cka_side_section(cka: dict[str, Any], n_cka: int, command: str, load_before: float) -> str:
    """The side-by-side CKA section of docs/benchmarks.md (``load_before``: the 1-minute load
    average when the run started)."""

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    side = cka["side"]
    labels = {
        "ours": "ours, defaults (float32 Gram matrices of centred features, BatchNorm folded, channels-last)",
        "float64": 'ours, `precision="float64", fold_bn=False, memory_format="contiguous"` (the float64 path)',
        "pytorch-cka": "`pytorch-cka` 1.1 `compute_cka` (float32 throughout)",
        "torch_cka": "`torch_cka` 0.21 `CKA.compare` (float32, per pair, as documented: no `no_grad`)",
        "ckatorch": "`ckatorch` 1.0 `cka_batch` per pair and batch (float64 per-pair kernel)",
    }
    side_rows = "\n".join(
        f"| {labels[name]} | {v['seconds']:.2f} | {v['ratio']:.2f}x | {v['diff']:.1e} | {v['runs']} |"
        for name, v in sorted(side.items(), key=lambda kv: kv[1]["seconds"])
    )
    if "pytorch-cka" in side:
        vs_peer = side["pytorch-cka"]["ratio"]
        peer_line = f"ours is {vs_peer:.2f}x as fast as `pytorch-cka` in this run (target >= 1.2x: {ok(vs_peer >= 1.2)})"
    else:
        peer_line = "`pytorch-cka` is not installed here: no side-by-side figure"
    missing = [n for n in ("pytorch-cka", "torch_cka", "ckatorch") if n not in side]
    missing_line = f" Not installed in this run: {', '.join(missing)}." if missing else ""
    return f"""## Minibatch CKA side by side

`{command}` — resnet20 teacher x resnet8 student (randomly initialised), their stage outputs and
embeddings ({cka["pairs"]} layer pairs), {n_cka} `shapes` images in batches of 500, on the CPU; {peer_line}. Seconds are medians over the runs shown, interleaved; "vs ours"
is time over ours; the difference is the largest absolute difference from the float64 path.{missing_line}

| implementation | seconds | vs ours | max abs difference | runs |
|---|---|---|---|---|
{side_rows}

Ours forms each Gram matrix in float32 from the batch's column-centred features and forms and
accumulates the HSIC terms in float64 (centring leaves HSIC unchanged and keeps the large common
offset of post-ReLU and pooled features out of the float32 product; `tests/test_cka_precision.py`
checks 1e-6 against a float64 reference, offsets of 100 and magnitudes of 1e22 and 1e-25
included), and reads the features from BatchNorm-folded, channels-last copies of the models.
`pytorch-cka` forms uncentred Gram matrices and accumulates HSIC in float32; `ckatorch`'s value is
a per-batch CKA averaged over batches, a different estimator, so its difference is not a rounding
error.

{load_note(load_before)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not the targets)")
    parser.add_argument(
        "--cka-side-only", action="store_true", help="only the side-by-side CKA section (a few minutes)"
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    n_cam, n_cka, n_land, steps = (100, 500, 200, 5) if args.quick else (1000, 5000, 1000, 21)
    ds = load_dataset("shapes", n_train=max(n_cka, 1000), n_test=max(n_cam, n_land))
    teacher, student = _models(3, 32, ds.num_classes)
    test_x, test_y = ds.normalize(ds.test.images), ds.test.labels
    flags = (" --quick" if args.quick else "") + (" --cka-side-only" if args.cka_side_only else "")
    command = f"python benchmarks/bench_analysis.py{flags}"
    if args.cka_side_only:
        side = bench_cka(ds.normalize(ds.train.images[:n_cka]), teacher, student, batch=500, loop=False)
        text = cka_side_section(side, n_cka, command, load_before)
        write_section("analysis-cka", text)
        print(text)
        return 0
    cam = bench_gradcam(test_x[:n_cam], test_y[:n_cam], [teacher, student])
    cka = bench_cka(ds.normalize(ds.train.images[:n_cka]), teacher, student, batch=500)
    land = bench_landscape(test_x[:n_land], test_y[:n_land], student, steps)
    tflop = steps * steps * n_land * model_info(student, (3, 32, 32)).flops / 1e12
    fwd = {
        name: model_info(m, (3, 32, 32)).flops * n_cam / 1e9 for name, m in (("t", teacher), ("s", student))
    }

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"


    body = f"""## Analyses

`python benchmarks/bench_analysis.py{" --quick" if args.quick else ""}` — `shapes` images (3x32x32), resnet20 teacher and
resnet8 student (randomly initialised: speed and equality do not depend on training). Machine: {machine()}.

| measurement | ours (s) | baseline (s) | speed-up | max abs difference | target |
|---|---|---|---|---|---|
| Grad-CAM, {n_cam} images x 2 models (batched vs per-image captum loop; median of 3) | {cam["batched"]:.2f} | {cam["loop"]:.2f} | {cam["speedup"]:.1f}x | {cam["max_abs_diff"]:.1e} | >= 10x, < 1e-5: {ok(cam["speedup"] >= 10 and cam["max_abs_diff"] < 1e-5)} |
| reference: a batched inference forward of both models (BN folded, channels-last, no CAM) | {cam["forward"]:.2f} | {cam["loop"]:.2f} | {cam["ceiling"]:.1f}x | - | - |
| minibatch CKA, {cka["pairs"]} layer pairs, {n_cka} samples (one pass vs a pass per pair) | {cka["fast"]:.2f} | {cka["loop"]:.2f} | {cka["speedup"]:.1f}x | {cka["max_abs_diff"]:.1e} | >= 10x: {ok(cka["speedup"] >= 10)} |
| 2-D landscape {steps}x{steps} on {n_land} samples, resnet8 (defaults: channels-last on the CPU, BatchNorm folded) | {land["auto"]:.1f} | {land["plain"]:.1f} | {land["plain"] / land["auto"]:.2f}x | - | <= 30 s: {ok(land["auto"] <= 30)} |

The CKA baseline makes one pass over the data per layer pair (forward passes, both Gram
matrices, unbiased HSIC), as a per-pair CKA function would; ours makes one pass for all pairs
and computes each layer's Gram matrix once per batch. Both hold only one batch's Gram matrices
(memory O(batch²)). Side by side with other CKA packages: the next section.


Both the batched Grad-CAM and the landscape are bound by the models' arithmetic.

- Grad-CAM: each batch takes one forward that records the autograd graph only from the CAM layer
  on and yields the logits too, and one backward from the target logits down to that layer, on an
  eval-mode copy of the model with BatchNorm folded into the convolutions before it; it takes
  {100 * cam["batched"] / cam["forward"]:.0f} % of the time of a batched inference forward of the same folded networks
  (resnet20 + resnet8 on {n_cam} images: {fwd["t"] + fwd["s"]:.0f} GFLOP). The per-image captum loop does the
  same arithmetic at batch 1 plus its per-call overhead: {cam["ceiling"]:.1f}x that forward on this CPU in
  this run, which bounds what any batched method built on these forwards can gain over it here.
- Landscape (baseline: the same call with `memory_format="contiguous", fold_bn=False`, the plain
  NCHW model): {steps * steps} grid points x {n_land} forward passes of resnet8 ({model_info(student, (3, 32, 32)).flops / 1e6:.0f} MFLOPs
  each) is {tflop:.1f} TFLOP, {1000 * tflop / land["auto"]:.0f} GFLOP/s achieved; 30 s would need {1000 * tflop / 30:.0f} GFLOP/s, above
  the fp32 peak of these two cores (2 cores x 32 FLOP/cycle x about 3 GHz, about 190 GFLOP/s).
  On the CPU `points_per_batch="auto"` evaluates one grid point per call, as before; several
  points per vmapped call are for GPUs (`python benchmarks/bench_gpu.py`, section below).

{load_note(load_before)}
"""
    write_section("analysis", body)
    print(body)
    text = cka_side_section(cka, n_cka, command, load_before)
    write_section("analysis-cka", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
