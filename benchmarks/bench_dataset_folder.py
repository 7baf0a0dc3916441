"""Adding a folder of 10,000 images to the run store and previewing it: `add_dataset` + `preview_dataset`.

A folder of PNG files (32x32 RGB, 10 classes of 1,000 images; random pixels, each image its own) is
generated in a temporary directory, then added twice: as the folder itself (registered where it is)
and as a ``.zip`` of it given as bytes (an upload: unpacked into the store). Each add reads every
header, loads every image once to check it, and writes the entry; the preview then draws 8 samples
per class, counts the classes, computes the mean and std, and hashes every image to find test
images duplicated from train. Wall and CPU seconds per phase (the phases of an add are timed from
its progress reports). Target: add + preview of the folder within 30 s.

    python benchmarks/bench_dataset_folder.py [--images 10000] [--size 32]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import load_note, machine, write_section  # noqa: E402

from workbench.data import preview_dataset  # noqa: E402
from workbench.runs.datasets import add_dataset  # noqa: E402

CLASSES = 10
TARGET_S = 30.0


def generate(root: Path, images: int, size: int) -> None:
    """``root/class_k/NNNNN.png``: ``images`` random RGB images spread evenly over the classes."""
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")


def zipped(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # PNG is compressed already
        for path in sorted(root.rglob("*.png")):
            zf.write(path, "upload/" + path.relative_to(root).as_posix())
    return buf.getvalue()


class Phases:
    """Wall and CPU time stamps at each new progress message of one call."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float, float]] = [("start", time.perf_counter(), time.process_time())]

    def __call__(self, done: int, total: int, message: str) -> None:
        if message != self.marks[-1][0]:
            self.marks.append((message, time.perf_counter(), time.process_time()))

    def end(self) -> None:
        self.marks.append(("end", time.perf_counter(), time.process_time()))

    def spans(self) -> dict[str, tuple[float, float]]:
        """Seconds (wall, CPU) per phase, phases named by the kind of message that opened them."""
        out: dict[str, tuple[float, float]] = {}
        for (message, w0, c0), (_, w1, c1) in zip(self.marks, self.marks[1:], strict=False):
            key = _phase(message)
            wall, cpu = out.get(key, (0.0, 0.0))
            out[key] = (wall + w1 - w0, cpu + c1 - c0)
        return out


def _phase(message: str) -> str:
    if "unpacking" in message:
        return "unpack"
    if "file headers" in message:
        return "headers"
    if "loading every image" in message:
        return "load"
    return "other"


def timed_add(store: Path, name: str, source: object) -> tuple[dict[str, tuple[float, float]], object]:
    phases = Phases()
    entry = add_dataset(store, name, source, progress=phases)
    phases.end()
    return phases.spans(), entry


def _total(spans: dict[str, tuple[float, float]]) -> tuple[float, float]:
    return sum(v[0] for v in spans.values()), sum(v[1] for v in spans.values())


def _rows(label: str, spans: dict[str, tuple[float, float]]) -> list[str]:
    rows = [f"| {label}: {key} | {spans[key][0]:.2f} | {spans[key][1]:.2f} |"
            for key in ("unpack", "headers", "load", "other") if key in spans]
    wall, cpu = _total(spans)
    return [*rows, f"| **{label}: add_dataset** | **{wall:.2f}** | **{cpu:.2f}** |"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-dataset-folder-") as tmp:
        root = Path(tmp) / "images"
        t0 = time.perf_counter()
        generate(root, args.images, args.size)
        made_s = time.perf_counter() - t0
        data = zipped(root)
        store = Path(tmp) / "store"
        folder_phases, entry = timed_add(store, "folder", root)
        w0, c0 = time.perf_counter(), time.process_time()
        dataset = entry.load()
        w1, c1 = time.perf_counter(), time.process_time()
        preview = preview_dataset(dataset)
        load_s = (w1 - w0, c1 - c0)
        preview_s = (time.perf_counter() - w1, time.process_time() - c1)
        zip_phases, zip_entry = timed_add(store, "upload", data)
    folder_total = _total(folder_phases)
    both = (folder_total[0] + preview_s[0], folder_total[1] + preview_s[1])
    verdict = "met" if both[0] <= TARGET_S else "missed"
    zip_label = f"zip of {len(data) / 2**20:.0f} MB as bytes, unpacked into the store"
    rows = _rows("folder, registered where it is", folder_phases) + _rows(zip_label, zip_phases)
    rows.append(f"| load the stored dataset again (`DatasetEntry.load`) | {load_s[0]:.2f} | {load_s[1]:.2f} |")
    rows.append(f"| **preview_dataset** | **{preview_s[0]:.2f}** | **{preview_s[1]:.2f}** |")
    body = f"""
## Adding a dataset of your own

`python benchmarks/bench_dataset_folder.py --images {args.images} --size {args.size}` — a folder of
{args.images:,} PNG files ({args.size}x{args.size} RGB, {CLASSES} classes, written in {made_s:.0f} s, not timed),
added to a run store with `add_dataset` as the folder itself and as a zip of it given as bytes, then
previewed (8 samples per class, counts, mean/std, duplicate hashes of all {entry.train_size + entry.test_size:,}
images). Machine: {machine()}. {load_note(load_before)}

| phase | wall s | CPU s |
|---|---|---|
{chr(10).join(rows)}

| target | figure | |
|---|---|---|
| `add_dataset` of the folder + `preview_dataset` within {TARGET_S:.0f} s | {both[0]:.1f} s wall ({both[1]:.1f} s CPU) | {verdict} |

Both adds read every image header (sizes, colour modes, decompression bombs) and then decode every
image once into one preallocated array; the zip route first unpacks {zip_entry.train_size + zip_entry.test_size:,} files,
counting the bytes written against the caps. The preview found {preview.duplicates} duplicated test images and
{len(preview.warnings)} warnings.
"""
    write_section("dataset-folder", body)
    print(body)
    return 0 if both[0] <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
