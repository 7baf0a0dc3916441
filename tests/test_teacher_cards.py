"""A malformed shipped-teacher card is a one-line TeacherError naming the file, never a traceback."""

from __future__ import annotations

import json

import pytest

from workbench.runs.teachers import TeacherError, _read_card

GOOD = {"model": {"name": "cnn_large", "kwargs": {}}, "num_classes": 10, "in_channels": 1, "image_size": 28}


def test_good_card_reads(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(GOOD))
    assert _read_card(p)["model"]["name"] == "cnn_large"


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (json.dumps([1, 2]).encode(), "model.name"),
        (json.dumps({**GOOD, "model": {"name": 3}}).encode(), "model.name"),
        (json.dumps({**GOOD, "num_classes": -1}).encode(), "num_classes"),
        (json.dumps({**GOOD, "image_size": True}).encode(), "image_size"),
        (b" " * (2 << 20), "more than a card can be"),
    ],
)
def test_bad_cards_name_the_file_in_one_line(tmp_path, payload, match):
    p = tmp_path / "bad.json"
    p.write_bytes(payload)
    with pytest.raises(TeacherError, match=match) as info:
        _read_card(p)
    msg = str(info.value)
    assert "bad.json" in msg and "\n" not in msg
