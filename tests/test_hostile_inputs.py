"""Hostile inputs: every one is refused with one line naming the file, option or argument, before
memory is exhausted (models sized from their architecture, datasets from their headers)."""

from __future__ import annotations

import gzip
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.data import DataError, check_dataset, load_dataset, memory_budget_bytes
from workbench.data.download import download_file, extract_tar
from workbench.data.idx import encode_idx, read_idx
from workbench.data.limits import BUDGET_ENV, format_bytes
from workbench.data.safe_pickle import safe_loads
from workbench.data.shapes import SAMPLE_BYTES, estimate_shapes
from workbench.models import ModelError, create_model, estimate_model, estimate_model_bytes
from workbench.models.estimate import MODULE_OVERHEAD_BYTES


def one_line(err: pytest.ExceptionInfo[BaseException], *fragments: str) -> str:
    """The message of ``err``: one line, printable as UTF-8, holding every fragment."""
    text = str(err.value)
    assert "\n" not in text and "\r" not in text and text.strip() == text
    text.encode("utf-8")  # no lone surrogates: printing it cannot fail
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch):
    """Set the memory budget to ``mb`` megabytes for this test."""

    def set_budget(mb: float) -> int:
        monkeypatch.setenv(BUDGET_ENV, repr(mb))
        return memory_budget_bytes()

    return set_budget


# ---- the budget ------------------------------------------------------------------------------


def test_budget_from_env_and_bad_env(budget, monkeypatch: pytest.MonkeyPatch) -> None:
    assert budget(2) == 2 * 1024 * 1024
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(DataError) as err:
        memory_budget_bytes()
    one_line(err, BUDGET_ENV, "'lots'")
    with pytest.raises(ModelError) as err:
        create_model("mlp")
    one_line(err, BUDGET_ENV)
    monkeypatch.delenv(BUDGET_ENV)
    assert memory_budget_bytes() > 0
    assert format_bytes(3 * 1024**3) == "3.0 GB" and format_bytes(512) == "512 B"


# ---- models ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("mlp", {"hidden": [7, 5, 3], "batchnorm": True, "dropout": 0.2}, (1, 28, 28)),
        ("cnn", {"channels": [3, 5], "convs_per_stage": 3}, (3, 32, 32)),
        ("resnet", {"depth": 14, "width": 2}, (1, 8, 8)),
        ("resnet8x4", {}, (3, 32, 32)),
        ("wrn", {"depth": 10, "widen_factor": 3}, (3, 32, 32)),
        ("vgg", {"depth": 19, "width": 0.3}, (1, 28, 28)),
        ("mobilenetv2", {"width_mult": 1.5, "expand_ratio": 2, "last_channel": 100}, (3, 32, 32)),
        ("vit_tiny", {"patch_size": 2, "dim": 24, "heads": 3, "depth": 2, "mlp_ratio": 1.7}, (1, 8, 8)),
    ],
)
def test_estimate_matches_the_built_model(name: str, kwargs: dict, shape: tuple[int, int, int]) -> None:
    est = estimate_model(name, num_classes=7, in_channels=shape[0], image_size=shape[1], **kwargs)
    model = create_model(name, num_classes=7, in_channels=shape[0], image_size=shape[1], **kwargs)
    assert est is not None
    assert est.params == sum(p.numel() for p in model.parameters())
    assert est.buffer_bytes == sum(b.numel() * b.element_size() for b in model.buffers())
    modules = sum(1 for _ in model.modules())
    assert abs(est.modules - modules) <= 0.2 * modules + 2
    nbytes = estimate_model_bytes(name, num_classes=7, in_channels=shape[0], image_size=shape[1], **kwargs)
    assert nbytes == 4 * est.params + est.buffer_bytes + MODULE_OVERHEAD_BYTES * est.modules


def test_mlp_by_hand() -> None:
    # 784 -> 100000 -> 100000 -> 10 with biases
    with pytest.raises(ModelError) as err:
        create_model("mlp", hidden=[100000, 100000])
    params = 784 * 100000 + 100000 + 100000 * 100000 + 100000 + 100000 * 10 + 10
    one_line(err, "model 'mlp'", "hidden=[100000, 100000]", f"{params:,} parameters", "budget", "refused")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet", {"depth": 6 * 10**9 + 2}),
        ("vit_tiny", {"depth": 10**9}),
        ("cnn", {"convs_per_stage": 10**12}),
        ("wrn", {"depth": 6 * 10**8 + 4, "widen_factor": 1000}),
        ("vgg", {"depth": 19, "width": 1e6}),
        ("mobilenetv2", {"width_mult": 1e4}),
    ],
)
def test_huge_zoo_models_refused_without_allocating(name: str, kwargs: dict) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ModelError) as err:
            create_model(name, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    key = next(iter(kwargs))
    one_line(err, f"model {name!r}", f"{key}=", "parameters", "over the budget", "refused before allocating")
    assert peak < 1 << 20  # arithmetic only


def test_model_on_both_sides_of_the_budget(budget) -> None:
    nbytes = estimate_model_bytes("cnn_small", num_classes=10, in_channels=1, image_size=28)
    budget(nbytes * 1.01 / 2**20)
    model = create_model("cnn_small")
    assert sum(p.numel() for p in model.parameters()) == estimate_model("cnn_small").params
    budget(nbytes * 0.99 / 2**20)
    with pytest.raises(ModelError) as err:
        create_model("cnn_small")
    one_line(err, "model 'cnn_small'", "the default arguments on 1x28x28 inputs", "set by " + BUDGET_ENV)
    with pytest.raises(ModelError):
        estimate_model_bytes("cnn_small")


def test_huge_input_makes_the_mlp_refused() -> None:
    with pytest.raises(ModelError) as err:
        create_model("mlp", in_channels=3, image_size=4096)
    one_line(err, "model 'mlp'", "3x4096x4096")


def test_estimate_reports_bad_values_like_the_factory() -> None:
    for kwargs, fragment in (({"depth": 9}, "depth=9"), ({"width": "x"}, "width='x'")):
        with pytest.raises(ModelError) as err:
            estimate_model("resnet", **kwargs)
        one_line(err, "model 'resnet'", fragment)
    with pytest.raises(ModelError) as err:
        estimate_model("mlp", hidden=[0])
    one_line(err, "hidden=")


# ---- image folders ---------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height`` RGB pixels (the data is a few bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _folder(root: Path, n: int = 4, size: int = 6) -> None:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((size, size, 3), 40 * i, dtype=np.uint8)).save(root / cls / f"{i}.png")


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (10000, 10000)])
def test_png_decompression_bomb_refused_by_name(tmp_path: Path, width: int, height: int) -> None:
    _folder(tmp_path)
    bomb = tmp_path / "b" / "bomb.png"
    bomb.write_bytes(png_claiming(width, height))
    assert bomb.stat().st_size < 200
    for call in (lambda: check_dataset("imagefolder", root=tmp_path),
                 lambda: load_dataset("imagefolder", root=tmp_path, image_size=8)):  # fmt: skip
        with pytest.raises(DataError) as err:
            call()
        one_line(err, f"file {bomb}", "refused", "decompression bomb")


def test_truncated_and_non_image_files_named(tmp_path: Path) -> None:
    _folder(tmp_path, size=32)
    good = tmp_path / "a" / "0.png"
    truncated = tmp_path / "a" / "1.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", root=tmp_path)
    one_line(err, f"file {truncated}", "not a readable image")
    truncated.write_bytes(good.read_bytes())
    fake = tmp_path / "b" / "notes.jpg"
    fake.write_bytes(b"\xff\xfe not a jpeg at all \x00\x01")
    with pytest.raises(DataError) as err:
        check_dataset("imagefolder", root=tmp_path)
    one_line(err, f"file {fake}", "not a readable image")


def test_image_folder_at_4096_refused_before_decoding(tmp_path: Path, budget) -> None:
    _folder(tmp_path, n=5)
    budget(256)
    # 10 images x 3 x 4096 x 4096 bytes = 480 MiB (+ labels): over 256 MB, refused from the headers
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", root=tmp_path, image_size=4096)
    one_line(err, f"root {tmp_path}", "10 images of 3x4096x4096", "over the budget of 256.0 MB", "image_size")
    expected = 10 * (3 * 64 * 64 + 8)
    assert check_dataset("imagefolder", root=tmp_path, image_size=64) == expected
    ds = load_dataset("imagefolder", root=tmp_path, image_size=64)
    assert ds.image_shape == (3, 64, 64) and len(ds.train) + len(ds.test) == 10


def test_non_utf8_class_folder_named(tmp_path: Path) -> None:
    _folder(tmp_path)
    bad = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(bad)
    Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(os.fsdecode(bad + b"/0.png"))
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", root=tmp_path)
    text = one_line(err, "not valid UTF-8", "rename it")
    assert "caf\\udce9" in text


# ---- IDX files --------------------------------------------------------------------------------


def _idx_header(*dims: int) -> bytes:
    return struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def gzip_bomb(header: bytes, members: int, zeros: int = 10 << 20) -> bytes:
    """``header`` then ``members * zeros`` zero bytes, as multi-member gzip (kilobytes per member)."""
    member = gzip.compress(bytes(zeros), compresslevel=9)
    return gzip.compress(header) + member * members


def test_gzip_header_claiming_7gb_refused_before_reading(tmp_path: Path, budget) -> None:
    budget(512)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(_idx_header(10**7, 28, 28), members=1))
    with pytest.raises(DataError) as err:
        read_idx(path, ndim=3)
    one_line(err, f"file {path}", "(10000000, 28, 28)", "7.3 GB", "refused before reading")


def test_gzip_inflating_to_7gb_read_only_as_far_as_the_header_says(tmp_path: Path) -> None:
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip_bomb(_idx_header(100, 28, 28), members=700))  # 7 GB of zeros behind 78 kB
    assert path.stat().st_size < 10 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            read_idx(path, ndim=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_line(err, f"file {path}", "trailing bytes", "need 78400 data bytes")
    assert peak < 16 << 20


def test_idx_header_claiming_more_than_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.write_bytes(_idx_header(10**6, 28, 28) + bytes(100))
    with pytest.raises(DataError) as err:
        read_idx(path)
    one_line(err, f"file {path}", "truncated", "found 100")
    lying = tmp_path / "lying.gz"
    lying.write_bytes(gzip.compress(_idx_header(10**6, 28, 28) + bytes(100)))
    with pytest.raises(DataError) as err:
        read_idx(lying)
    one_line(err, f"file {lying}", "truncated", "found 100")


def _mnist_files(root: Path, n_train: int = 20, size: int = 28, n_labels: int | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    n_labels = n_train if n_labels is None else n_labels
    (root / "train-images-idx3-ubyte").write_bytes(encode_idx(np.zeros((n_train, size, size), np.uint8)))
    (root / "train-labels-idx1-ubyte").write_bytes(encode_idx((np.arange(n_labels) % 10).astype(np.uint8)))
    (root / "t10k-images-idx3-ubyte").write_bytes(encode_idx(np.zeros((10, 28, 28), np.uint8)))
    (root / "t10k-labels-idx1-ubyte").write_bytes(encode_idx((np.arange(10) % 10).astype(np.uint8)))


def test_mnist_headers_checked_before_loading(tmp_path: Path, budget) -> None:
    _mnist_files(tmp_path / "a", size=32)
    with pytest.raises(DataError) as err:
        check_dataset("mnist", root=tmp_path / "a")
    one_line(err, f"file {tmp_path / 'a' / 'train-images-idx3-ubyte'}", "(20, 32, 32)", "28 x 28")
    _mnist_files(tmp_path / "b", n_labels=19)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", root=tmp_path / "b")
    one_line(err, "train-labels-idx1-ubyte", "holds 19 labels", "20 images")
    _mnist_files(tmp_path / "c")
    assert check_dataset("mnist", root=tmp_path / "c") == 20 * 784 + 20 * 8 + 10 * 784 + 10 * 8
    budget(0.01)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", root=tmp_path / "c")
    one_line(err, "IDX set needs about", "over the budget")


# ---- shapes -------------------------------------------------------------------------------------


def test_shapes_estimate_by_hand_and_budget(budget) -> None:
    assert SAMPLE_BYTES == 3 * 32 * 32 + 32 * 32 + 4 * 4 + 8 + 8
    # a cached set is held twice (cache + copy) plus 1 kB of rendering temporaries per sample
    assert estimate_shapes({"n_train": 100, "n_test": 10}) == 110 * (2 * SAMPLE_BYTES + 1024)
    budget(1)  # 1 MiB = 1,048,576 bytes: 110 samples (1,020,800 bytes) fit, 120 do not
    assert check_dataset("shapes", n_train=100, n_test=10) == 1_020_800
    with pytest.raises(DataError) as err:
        load_dataset("shapes", n_train=110, n_test=10)
    one_line(err, "option n_train", "110 train + 10 test", "over the budget of 1.0 MB")


def test_shapes_at_the_schema_maximum_is_refused_on_a_small_budget(budget) -> None:
    budget(1024)
    with pytest.raises(DataError) as err:
        load_dataset("shapes", n_train=2_000_000)
    one_line(err, "option n_train", "2000000 train")


# ---- pickles ------------------------------------------------------------------------------------


class _Reduce:
    def __init__(self, fn: object, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple:
        return self.fn, self.args


@pytest.mark.parametrize(
    "payload",
    [
        _Reduce(bytearray, (10**12,)),
        _Reduce(bytes, (10**12,)),
        _Reduce(np.ndarray, ((10**6, 10**6),)),
    ],
    ids=["bytearray", "bytes", "ndarray"],
)
def test_pickle_allocation_bombs_refused(payload: object) -> None:
    data = pickle.dumps({"data": payload}, protocol=2)
    assert len(data) < 200
    with pytest.raises(DataError) as err:
        safe_loads(data, "batch-file")
    one_line(err, "file batch-file", "refused")


def test_real_arrays_still_load() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
        loaded = safe_loads(pickle.dumps({b"data": array, b"x": bytearray(b"ab")}, protocol=protocol))
        np.testing.assert_array_equal(loaded[b"data"], array)
        assert loaded[b"x"] == bytearray(b"ab")


def _cifar10(root: Path, data: object, labels: object, names: object = None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    good = {b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(good, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
    meta = names if names is not None else [f"c{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": meta}, protocol=2))
    return folder


@pytest.mark.parametrize(
    ("data", "labels", "fragment"),
    [
        (np.zeros((10, 3072), np.float32), list(range(10)), "'data' should be a uint8 array (N, 3072)"),
        (np.zeros((10, 100), np.uint8), list(range(10)), "'data' should be a uint8 array (N, 3072)"),
        (b"not an array", list(range(10)), "'data' should be a uint8 array"),
        (np.zeros((10, 3072), np.uint8), [[1, 2], [3]], "'labels' should"),
        (np.zeros((10, 3072), np.uint8), ["a"] * 10, "'labels' should hold 10 integer labels"),
        (np.zeros((10, 3072), np.uint8), list(range(9)), "'labels' should hold 10 integer labels"),
    ],
)
def test_cifar_wrong_shapes_and_dtypes_named(
    tmp_path: Path, data: object, labels: object, fragment: str
) -> None:
    folder = _cifar10(tmp_path, data, labels)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path)
    one_line(err, f"file {folder / 'test_batch'}", fragment)


def test_cifar_meta_names_non_utf8_and_non_strings(tmp_path: Path) -> None:
    names = [b"caf\xe9"] + [f"c{i}".encode() for i in range(1, 10)]
    _cifar10(tmp_path, np.zeros((10, 3072), np.uint8), list(range(10)), names)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.class_names[0] == "caf\ufffd"
    for name in ds.class_names:
        name.encode("utf-8")
    folder = _cifar10(tmp_path, np.zeros((10, 3072), np.uint8), list(range(10)), list(range(10)))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path)
    one_line(err, f"file {folder / 'batches.meta'}", "list of names")


# ---- downloads and archives ---------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/announce``: a Content-Length of 10 GB and no body; ``/stream``: 3 MB without a length."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path.endswith("announce.gz"):
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024**3))
            self.end_headers()
            self.wfile.write(b"x" * 1024)
        else:
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(3):
                self.wfile.write(bytes(1 << 20))
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_download_over_the_size_cap(server: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        download_file([server], tmp_path / "announce.gz", "0" * 32, timeout=5, max_bytes=1 << 20)
    one_line(err, "file announce.gz", "announces 10737418240 bytes", "not downloaded")
    with pytest.raises(DataError) as err:
        download_file([server], tmp_path / "stream.gz", "0" * 32, timeout=5, max_bytes=1 << 20)
    one_line(err, "file stream.gz", "sent more than the limit", "aborted")
    assert list(tmp_path.iterdir()) == []  # no .part file, no final file


def test_tar_unpacking_over_the_cap_extracts_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("big/zeros.bin")
        info.size = 4 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    dest = tmp_path / "out"
    with pytest.raises(DataError) as err:
        extract_tar(archive, dest, max_bytes=1 << 20)
    one_line(err, f"archive {archive}", "4194304 bytes", "nothing was extracted")
    assert list(dest.iterdir()) == []
    extract_tar(archive, dest)
    assert (dest / "big" / "zeros.bin").stat().st_size == 4 << 20


# ---- the command line ---------------------------------------------------------------------------


def test_cli_exit_2_one_line_naming_the_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from workbench.cli import app

    _folder(tmp_path)
    bomb = tmp_path / "a" / "bomb.png"
    bomb.write_bytes(png_claiming(20000, 20000))
    result = CliRunner().invoke(app, ["data", "prepare", "imagefolder", "--root", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: file ") and "bomb.png" in lines[0]
    assert "Traceback" not in result.output
