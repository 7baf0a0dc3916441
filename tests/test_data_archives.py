"""Unpacking a dataset's archive: only inside its folder, only within the caps, nothing left on failure."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from workbench.data import DataError, unpack_archive, unpack_zip
from workbench.data.download import check_member_name


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _central_offset(data: bytes, field: int) -> int:
    """Byte offset of ``field`` bytes into the first central-directory header."""
    return data.index(b"PK\x01\x02") + field


def test_a_zip_unpacks_its_files_and_skips_the_archivers_own(tmp_path: Path) -> None:
    data = _zip({"pets/cat/1.png": b"c1", "pets/dog/2.png": b"d22", "__MACOSX/pets/._1.png": b"fork",
                 "pets/.DS_Store": b"x"})
    done = unpack_zip(data, tmp_path / "out")
    assert _everything(tmp_path / "out") == ["pets", "pets/cat", "pets/cat/1.png", "pets/dog", "pets/dog/2.png"]
    assert (tmp_path / "out/pets/dog/2.png").read_bytes() == b"d22"
    assert (done.files, done.bytes, done.skipped) == (2, 5, 2)
    assert _everything(tmp_path) == ["out", *(f"out/{p}" for p in _everything(tmp_path / "out"))]


def test_a_zip_is_read_from_a_path_or_a_file_object(tmp_path: Path) -> None:
    data = _zip({"a/x.png": b"1"})
    path = tmp_path / "up.zip"
    path.write_bytes(data)
    assert unpack_zip(path, tmp_path / "one").files == 1
    assert unpack_zip(io.BytesIO(data), tmp_path / "two").files == 1
    assert unpack_archive(path, tmp_path / "three").files == 1


@pytest.mark.parametrize("name", ["../escape.png", "a/../../escape.png", "/abs/escape.png", "C:/escape.png",
                                  "C:escape.png", "a\\..\\escape.png"])
def test_member_names_that_could_leave_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    data = _zip({"ok/fine.png": b"1", name: b"gotcha"})
    with pytest.raises(DataError, match="would be written outside the target folder") as err:
        unpack_zip(data, tmp_path / "box" / "out", name="evil.zip")
    assert str(err.value).startswith("archive evil.zip: member ") and "\n" not in str(err.value)
    assert _everything(tmp_path) == ["box"]  # no staging, no output, nothing beside it


@pytest.mark.parametrize("name", ["a/b.png", "deep/er/c.png", "d..e.png", "./f.png"])
def test_plain_relative_names_pass(name: str) -> None:
    assert not check_member_name(name, "x.zip").is_absolute()


@pytest.mark.parametrize("name", ["", "/", "a/\x00.png", "..", "D:\\x.png"])
def test_empty_nul_and_drive_names_are_refused(name: str) -> None:
    with pytest.raises(DataError, match="would be written outside"):
        check_member_name(name, "x.zip")


def test_a_symbolic_link_member_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("pets/cat")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc")
    with pytest.raises(DataError, match="is a symbolic link"):
        unpack_zip(buf.getvalue(), tmp_path / "out")
    assert _everything(tmp_path) == []


def test_too_many_files_are_refused_before_unpacking(tmp_path: Path) -> None:
    data = _zip({f"c/{i}.png": b"x" for i in range(5)})
    with pytest.raises(DataError, match="holds 5 files, over the limit of 3; nothing was unpacked"):
        unpack_zip(data, tmp_path / "out", max_files=3)
    assert _everything(tmp_path) == []
    assert unpack_zip(data, tmp_path / "out", max_files=5).files == 5


def test_declared_size_over_the_cap_is_refused_before_unpacking(tmp_path: Path) -> None:
    data = _zip({"c/big.bin": bytes(3000), "c/small.bin": b"x"})
    with pytest.raises(DataError, match="over the limit of"):
        unpack_zip(data, tmp_path / "out", max_bytes=3000)
    assert _everything(tmp_path) == []


def test_a_member_larger_than_its_declared_size_is_stopped(tmp_path: Path) -> None:
    # a bomb: one member of 1 MiB of zeros whose central directory says 100 bytes
    data = bytearray(_zip({"c/bomb.bin": bytes(1 << 20)}))
    struct.pack_into("<I", data, _central_offset(bytes(data), 24), 100)
    with pytest.raises(DataError, match="archive upload: ") as err:
        unpack_zip(bytes(data), tmp_path / "out")
    assert "\n" not in str(err.value)
    assert _everything(tmp_path) == []


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    data = bytearray(_zip({"c/secret.png": b"x"}, zipfile.ZIP_STORED))
    struct.pack_into("<H", data, _central_offset(bytes(data), 8), 0x1)
    with pytest.raises(DataError, match="is encrypted"):
        unpack_zip(bytes(data), tmp_path / "out")
    assert _everything(tmp_path) == []


def test_not_a_zip_and_an_existing_destination_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a readable zip file"):
        unpack_zip(b"PK\x03\x04 not really", tmp_path / "out")
    (tmp_path / "taken").mkdir()
    with pytest.raises(DataError, match="already exists"):
        unpack_zip(_zip({"a/b": b"1"}), tmp_path / "taken")
    assert _everything(tmp_path) == ["taken"]


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_tar_archive_goes_through_the_same_rules(tmp_path: Path) -> None:
    good = tmp_path / "good.tar.gz"
    _tar(good, {"set/a/1.png": b"12", "set/b/2.png": b"3"})
    done = unpack_archive(good, tmp_path / "out")
    assert (done.files, done.bytes) == (2, 3)
    assert (tmp_path / "out/set/a/1.png").read_bytes() == b"12"
    evil = tmp_path / "evil.tgz"
    _tar(evil, {"../../escape.png": b"x"})
    with pytest.raises(DataError, match="would be written outside"):
        unpack_archive(evil, tmp_path / "out2")
    many = tmp_path / "many.tar"
    _tar(many, {f"{i}.png": b"x" for i in range(4)})
    with pytest.raises(DataError, match="holds 4 files, over the limit of 3"):
        unpack_archive(many, tmp_path / "out3", max_files=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tgz", "good.tar.gz", "many.tar", "out"]
