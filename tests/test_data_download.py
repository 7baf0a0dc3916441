"""Downloads from a loopback HTTP server: checksum verification, atomic writes, safe archive extraction."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from workbench.data import DataError, load_dataset
from workbench.data.download import download_file, extract_tar
from workbench.data.idx import encode_idx

GZ_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (any free port); yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _write_gz_set(folder: Path, n_train: int = 20, n_test: int = 10) -> dict[str, str]:
    rng = np.random.default_rng(3)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    checksums = {}
    for role, array in arrays.items():
        path = folder / GZ_NAMES[role]
        path.write_bytes(gzip.compress(encode_idx(array)))
        checksums[path.name] = _md5(path)
    return checksums


def test_mnist_download_verifies_and_loads(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    checksums = _write_gz_set(folder)
    root = tmp_path / "data"
    ds = load_dataset("mnist", root=root, download=True, mirror=url, checksums=checksums)
    assert len(ds.train) == 20 and len(ds.test) == 10
    assert sorted(p.name for p in root.iterdir()) == sorted(GZ_NAMES.values())
    for name in GZ_NAMES.values():
        assert (root / name).read_bytes() == (folder / name).read_bytes()
    # a second call finds the verified files and does not need the server's content
    for name in GZ_NAMES.values():
        (folder / name).unlink()
    again = load_dataset("mnist", root=root, download=True, mirror=url, checksums=checksums)
    assert len(again.train) == 20


def test_wrong_checksum_fails_and_leaves_no_file(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    checksums = _write_gz_set(folder)
    checksums["t10k-images-idx3-ubyte.gz"] = "0" * 32
    root = tmp_path / "data"
    with pytest.raises(DataError, match="file t10k-images-idx3-ubyte.gz from .*MD5 .* does not match") as err:
        load_dataset("fashion-mnist", root=root, download=True, mirror=url, checksums=checksums)
    assert "\n" not in str(err.value)
    left = sorted(p.name for p in root.iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in left
    assert not any(name.endswith((".part", ".tmp")) for name in left)


def test_mirror_from_environment(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = served
    checksums = _write_gz_set(folder)
    monkeypatch.setenv("WORKBENCH_DATA_MIRROR", url)
    ds = load_dataset("mnist", root=tmp_path / "data", download=True, checksums=checksums)
    assert len(ds.test) == 10


def test_existing_file_of_another_dataset_is_reported(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    checksums = _write_gz_set(folder)
    root = tmp_path / "data"
    load_dataset("mnist", root=root, download=True, mirror=url, checksums=checksums)
    # the published Fashion-MNIST checksums do not match these files
    with pytest.raises(DataError, match="is not the published .* of fashion-mnist"):
        load_dataset("fashion-mnist", root=root, download=True, mirror=url)


def test_missing_file_on_server_and_bad_options(served: tuple[Path, str], tmp_path: Path) -> None:
    _, url = served
    with pytest.raises(DataError, match="download failed from every source"):
        download_file([url], tmp_path / "absent.gz", "0" * 32)
    assert not (tmp_path / "absent.gz").exists()
    with pytest.raises(DataError, match="option checksums: unknown file 'nope.gz'"):
        load_dataset("mnist", root=tmp_path, download=True, mirror=url, checksums={"nope.gz": "0" * 32})
    with pytest.raises(DataError, match="option mirror"):
        load_dataset("mnist", root=tmp_path, download=True, mirror="ftp:/x")


def test_unreachable_mirror(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataError, match="download failed"):
        download_file([f"http://127.0.0.1:{port}/"], tmp_path / "x.gz", "0" * 32, timeout=5)


def _cifar10_archive(path: Path) -> None:
    rng = np.random.default_rng(5)

    def blob(obj: object) -> bytes:
        return pickle.dumps(obj, protocol=2)

    files = {}
    for i in range(1, 6):
        files[f"data_batch_{i}"] = blob(
            {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [i % 10, (i + 1) % 10]}
        )
    files["test_batch"] = blob(
        {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [0, 1, 2]}
    )
    files["batches.meta"] = blob({b"label_names": [f"class{k}".encode() for k in range(10)]})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_cifar10_download_and_extract(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    archive = folder / "cifar-10-python.tar.gz"
    _cifar10_archive(archive)
    root = tmp_path / "data"
    ds = load_dataset(
        "cifar10", root=root, download=True, mirror=url, checksums={"cifar-10-python.tar.gz": _md5(archive)}
    )
    assert ds.train.images.shape == (10, 3, 32, 32) and len(ds.test) == 3
    assert ds.class_names[3] == "class3"
    assert not any(p.name.startswith(".extract") for p in root.iterdir())


def test_cifar_wrong_checksum(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    _cifar10_archive(folder / "cifar-10-python.tar.gz")
    root = tmp_path / "data"
    with pytest.raises(DataError, match="does not match"):
        load_dataset(
            "cifar10", root=root, download=True, mirror=url, checksums={"cifar-10-python.tar.gz": "f" * 32}
        )
    assert list(root.iterdir()) == []


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


def test_extract_refuses_path_escape(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    _tar_with(archive, tarfile.TarInfo("../escaped.txt"), b"gotcha")
    dest = tmp_path / "out" / "inner"
    with pytest.raises(DataError, match="would be written outside"):
        extract_tar(archive, dest)
    assert not (tmp_path / "out" / "escaped.txt").exists()
    absolute = tmp_path / "abs.tar.gz"
    _tar_with(absolute, tarfile.TarInfo(str(tmp_path / "abs-escaped.txt")), b"gotcha")
    with pytest.raises(DataError, match="would be written outside"):
        extract_tar(absolute, dest)
    assert not (tmp_path / "abs-escaped.txt").exists()


def test_extract_refuses_links(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar.gz"
    link = tarfile.TarInfo("cifar-10-batches-py")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc"
    _tar_with(archive, link)
    with pytest.raises(DataError, match="is a link or device"):
        extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "cifar-10-batches-py").exists()


def test_extract_corrupt_archive(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match=f"archive {archive}"):
        extract_tar(archive, tmp_path / "out")


def test_corrupt_gzip_stream_gives_one_line_error(tmp_path: Path) -> None:
    raw = gzip.compress(b"x" * 100000)
    archive = tmp_path / "damaged.tar.gz"
    archive.write_bytes(raw[:30] + bytes(50) + raw[80:])
    with pytest.raises(DataError, match=f"archive {archive}") as err:
        extract_tar(archive, tmp_path / "out")
    assert "\n" not in str(err.value)
