"""The runtime contract: progress callables, cancel tokens, trackers, devices."""

from __future__ import annotations

import threading

import pytest
import torch

from workbench.devices import DeviceError, available_devices, resolve_device
from workbench.runtime import Cancelled, CancelToken, Tracker


def test_tracker_reports_monotone_and_clamps():
    seen = []
    t = Tracker(lambda d, n, m: seen.append((d, n, m)), total=3, label="rows")
    t.start()
    for _ in range(5):  # two more than the total: clamped, never beyond
        t.advance()
    assert [d for d, _, _ in seen] == [0, 1, 2, 3, 3, 3]
    assert all(n == 3 and m == "rows" for _, n, m in seen)


def test_cancel_raises_at_next_check_and_names_the_call():
    token = CancelToken()
    t = Tracker(None, token, total=10, label="landscape")
    t.advance()
    token.cancel()
    with pytest.raises(Cancelled, match="landscape: cancelled"):
        t.advance()
    token.reset()
    t.check()  # a reset token no longer stops


def test_cancel_from_another_thread():
    token = CancelToken()
    worker = threading.Thread(target=token.cancel)
    worker.start()
    worker.join()
    assert token.cancelled


def test_watch_file_is_a_cross_process_stop(tmp_path):
    stop = tmp_path / "stop"
    token = CancelToken().watch_file(stop)
    assert not token.cancelled
    stop.write_text("")
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.raise_if_cancelled()


def test_part_maps_sub_progress_into_its_range():
    seen = []
    t = Tracker(lambda d, n, m: seen.append((d, m)), total=100)
    sub = t.part(40, 60, "cka")
    sub(0, 4, "batch")
    sub(2, 4, "batch")
    sub(4, 4, "batch")
    assert [d for d, _ in seen] == [40, 50, 60]
    assert seen[0][1] == "cka: batch"


def test_bad_progress_or_cancel_is_a_type_error():
    with pytest.raises(TypeError, match="progress"):
        Tracker(progress=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cancel"):
        Tracker(cancel=object())  # type: ignore[arg-type]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_device(None) == resolve_device("auto")
    assert "cpu" in available_devices()
    with pytest.raises(DeviceError, match=r"^train\.device: expected auto"):
        resolve_device("cudaXYZ", field="train.device")
    with pytest.raises(DeviceError, match="train.device"):
        resolve_device("warp", field="train.device")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        with pytest.raises(DeviceError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
