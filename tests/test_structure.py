"""The house rules of scripts/check_structure.py: the checker on trees made here, then on the project."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("check_structure", ROOT / "scripts" / "check_structure.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_finds_a_circle_through_a_lazy_import_and_ignores_type_checking(tmp_path: Path) -> None:
    check = _checker()
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import x\n",
            "pkg/b.py": "def f():\n    from pkg import a\n    return a\nx = 1\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import y\n",
            "pkg/d.py": "from pkg.c import TYPE_CHECKING as y\n",
            "pkg/sub/__init__.py": "from pkg.sub.e import z\n",
            "pkg/sub/e.py": "from . import f\nz = 1\n",
            "pkg/sub/f.py": "from ..a import x\n",
        },
    )
    graph = check.import_graph(tmp_path / "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == set()  # the TYPE_CHECKING import does not count
    assert graph["pkg.sub.e"] == {"pkg.sub.f"}  # relative import of a submodule
    assert graph["pkg.sub.f"] == {"pkg.a"}
    assert check.import_circles(graph) == [["pkg.a", "pkg.b"]]


def test_counts_module_and_function_sizes(tmp_path: Path) -> None:
    check = _checker()
    long_body = "\n".join(f"    x{i} = {i}" for i in range(81))
    ok_body = "\n".join(f"    y{i} = {i}" for i in range(80))
    doc = '    """' + "\n    words\n" * 30 + '    """\n'
    _write(
        tmp_path,
        {
            "pkg/long.py": f"def too_long():\n{long_body}\n\n\ndef fine():\n{doc}{ok_body}\n",
            "pkg/big.py": "x = 1\n" * 801,
            "pkg/edge.py": "x = 1\n" * 800,
        },
    )
    found = check.size_problems([tmp_path / "pkg"], root=tmp_path)
    assert any("long.py:1: function too_long has 81 lines" in line for line in found)
    assert not any("fine" in line for line in found)  # 80 body lines under a 30-line docstring
    assert any(line.startswith(str(Path("pkg/big.py")) + ": 801 lines") for line in found)
    assert not any("edge.py" in line for line in found)


def test_the_project_keeps_the_house_rules() -> None:
    found = _checker().problems(ROOT)
    assert found == [], "\n".join(found)


def test_an_import_up_the_floors_is_named() -> None:
    check = _checker()
    graph = {
        "workbench.analysis.cka": {"workbench.runs.store", "workbench.models.taps"},
        "workbench.runs.store": {"workbench.config"},
        "workbench.models.taps": set(),
        "workbench.config": set(),
        "workbench.newpart": set(),
    }
    found = check.floor_problems(graph)
    assert found == [
        "workbench.analysis.cka imports workbench.runs.store: floor 4 (runs) above floor 3 (analysis)",
        "workbench.newpart: 'newpart' has no floor in scripts/check_structure.py FLOORS",
    ]
