"""One vocabulary: the app's URL parameters, the panels' keyword arguments and the CLI's options spell
each setting as the library's keyword does (workbench/vocabulary.py, docs/glossary.md)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from workbench.vocabulary import EPOCH_METRICS, IMAGE_CHOICES, TERMS, term

ROOT = Path(__file__).resolve().parent.parent

#: spellings the faces used for a term before the vocabulary; none of them may come back
SYNONYMS = {
    "ckpt": "checkpoint",
    "which": "checkpoint",
    "other_ckpt": "checkpoint",
    "n": "n_samples",
    "samples": "n_samples",
    "ws": "workspace",
    "user": "workspace",
    "tlayer": "teacher_layer",
    "slayer": "layer",
    "hprobes": "n_probes",
    "runs_root": "store",
    "select": "pick",
}
_BOUND = {"bound_selectbox", "bound_multiselect", "bound_number", "bound_checkbox", "bound_text",
          "bound_slider", "bound_select_slider", "run_picker", "checkpoint_picker"}


def _cli_name(keyword: str) -> str:
    return "--" + keyword.replace("_", "-")


def test_every_face_spells_a_term_as_the_library_keyword() -> None:
    for t in TERMS:
        if t.url is not None:
            assert t.url == t.keyword, t
        if t.widget is not None:
            assert t.widget == t.keyword, t
        if t.cli is not None and t.keyword not in ("store", "run"):
            assert t.cli == _cli_name(t.keyword), t
    assert term("store").cli == "--runs"  # the store's folder, as in `workbench app --runs` and $WORKBENCH_RUNS
    with pytest.raises(KeyError, match="not a term"):
        term("ckpt")


def _app_url_params() -> dict[str, set[str]]:
    """URL parameter names the app binds: the string literals given as ``param`` (second positional
    argument or keyword) to the bound_* helpers and pickers, by file."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in _BOUND:
                continue
            candidates = [kw.value for kw in node.keywords if kw.arg == "param"]
            if name.startswith("bound_") and len(node.args) >= 2:
                candidates.append(node.args[1])
            for value in candidates:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    out.setdefault(str(path.relative_to(ROOT)), set()).add(value.value)
    return out


def test_the_app_binds_the_library_words() -> None:
    params = _app_url_params()
    assert params, "no bound URL parameter found in app/"
    used = set().union(*params.values())
    for file, names in params.items():
        bad = {n: SYNONYMS[n] for n in names if n in SYNONYMS}
        assert not bad, f"{file}: URL parameters {bad} (use the library's words)"
    # the pages that read these settings spell them the library's way
    for keyword in ("checkpoint", "n_samples", "seed", "method", "target", "pick", "metric", "n_probes", "layer",
                    "teacher_layer"):
        assert keyword in used, f"no page binds {keyword!r}"


def _panel_keywords() -> dict[str, set[str]]:
    import workbench.widgets as widgets

    out = {}
    for name in widgets.__all__:
        cls = getattr(widgets, name)
        if not inspect.isclass(cls) or not issubclass(cls, widgets.Panel) or cls is widgets.Panel:
            continue
        names = set(inspect.signature(cls.__init__).parameters)
        if hasattr(cls, "from_run"):
            names |= set(inspect.signature(cls.from_run).parameters)
        out[name] = names
    return out


def test_the_panels_take_the_library_words() -> None:
    keywords = _panel_keywords()
    assert {"CamExplorer", "CompareRuns", "DoctorPanel", "TrainPanel"} <= set(keywords)
    for panel, names in keywords.items():
        bad = {n: SYNONYMS[n] for n in names if n in SYNONYMS}
        assert not bad, f"{panel}: keywords {bad} (use the library's words)"
    for panel in ("CamExplorer", "SimilarityExplorer", "LandscapeExplorer", "AgreementExplorer", "DarkKnowledge"):
        assert {"store", "checkpoint", "n_samples", "seed", "device"} <= keywords[panel], panel
    assert {"layer", "teacher_layer", "pick", "method", "target"} <= keywords["CamExplorer"]


def _cli_options() -> dict[str, set[str]]:
    import typer.main

    from workbench.cli import app

    out: dict[str, set[str]] = {}

    def walk(command, path: str) -> None:
        for param in getattr(command, "params", []):
            out.setdefault(path, set()).update(o for o in param.opts if o.startswith("--"))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


def test_the_cli_takes_the_library_words() -> None:
    options = _cli_options()
    for command, opts in options.items():
        bad = {o for o in opts if o.lstrip("-").replace("-", "_") in SYNONYMS}
        assert not bad, f"workbench {command}: options {bad} (use the library's words)"
    for command in ("runs list", "runs show", "train distill", "doctor", "sweep", "demo", "jobs list", "jobs submit"):
        assert "--runs" in options[command], command
    assert {"--workspace"} <= options["jobs submit"] and {"--workspace"} <= options["jobs list"]
    assert {"--n-samples", "--checkpoint"} <= options["doctor"]


def test_the_library_takes_its_own_words() -> None:
    from workbench.analysis import compare_cams, hessian_trace
    from workbench.analysis.cam import select_images
    from workbench.diagnosis import diagnose
    from workbench.runs.session import open_run

    assert {"store", "checkpoint", "n_samples", "seed", "device"} <= set(inspect.signature(open_run).parameters)
    assert {"store", "checkpoint", "n_samples", "seed", "device"} <= set(inspect.signature(diagnose).parameters)
    assert "n_probes" in inspect.signature(hessian_trace).parameters
    assert {"method", "layers", "target"} <= set(inspect.signature(compare_cams).parameters)
    assert "pick" in inspect.signature(select_images).parameters


def test_one_list_of_image_choices_and_of_epoch_metrics() -> None:
    from workbench.analysis.cam import PICKS
    from workbench.widgets import CamExplorer

    assert PICKS == tuple(c for c in IMAGE_CHOICES if c != "upload")
    assert "kl" not in EPOCH_METRICS and "loss" not in EPOCH_METRICS
    source = inspect.getsource(CamExplorer.__init__)
    assert "PICKS" in source  # the panel offers the one list, not a list of its own


def test_the_glossary_lists_every_term() -> None:
    text = (ROOT / "docs" / "glossary.md").read_text()
    for t in TERMS:
        assert f"| `{t.keyword}` |" in text, t.keyword
