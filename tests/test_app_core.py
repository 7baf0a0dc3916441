"""The app's core: the entry script and navigation, the helpers of ``app/lib``, and ``workbench app`` (serve)."""
# ruff: noqa: F811  (fixtures imported from app_fixtures are redefined as test arguments)

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from app_fixtures import figures, make_app, no_exception, store_copy, tiny_store  # noqa: F401

from workbench import serve

pytest.importorskip("streamlit")


# ---- serve ------------------------------------------------------------------------------------
def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_build_command_has_the_server_flags():
    cmd = serve.build_command(port=8765, host="127.0.0.1")
    assert cmd[1:4] == ["-m", "workbench.app_server", "run"]  # streamlit run, with the scheduler
    assert cmd[4].endswith("app/main.py") and serve.app_script().is_file()
    assert _flag(cmd, "--server.address") == "127.0.0.1"
    assert _flag(cmd, "--server.port") == "8765"
    assert _flag(cmd, "--server.headless") == "true"
    assert _flag(cmd, "--browser.gatherUsageStats") == "false"
    assert _flag(cmd, "--server.maxUploadSize") == str(serve.MAX_UPLOAD_MB) and serve.MAX_UPLOAD_MB <= 10
    assert _flag(cmd, "--client.toolbarMode") == "minimal"
    assert _flag(serve.build_command(headless=False), "--server.headless") == "false"


@pytest.mark.parametrize("port", [0, 70000, "80", True])
def test_build_command_rejects_a_bad_port(port):
    with pytest.raises(serve.ServeError, match="--port"):
        serve.build_command(port=port)


def test_build_command_rejects_a_bad_host():
    with pytest.raises(serve.ServeError, match="--host"):
        serve.build_command(host="a b;rm")


def test_build_env_passes_store_jobs_and_ray(tmp_path):
    env = serve.build_env(runs=tmp_path / "r", max_jobs=3, ray_address="local", base={"PATH": "/bin"})
    assert env["WORKBENCH_RUNS"] == str((tmp_path / "r").resolve())
    assert env["WORKBENCH_MAX_JOBS"] == "3"
    assert env["WORKBENCH_RAY_ADDRESS"] == "local"
    assert env["PATH"] == "/bin"
    plain = serve.build_env(base={})
    assert "WORKBENCH_RUNS" not in plain and "WORKBENCH_MAX_JOBS" not in plain
    with pytest.raises(serve.ServeError, match="--max-jobs"):
        serve.build_env(max_jobs=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(serve.ServeError, match="--runs"):
        serve.build_env(runs=tmp_path / "file")


def test_app_url():
    assert serve.app_url("127.0.0.1", 8501) == "http://127.0.0.1:8501"
    assert serve.app_url("0.0.0.0", 80) == "http://localhost:80"


def test_free_port_wait_ready_and_stop_without_an_app():
    port = serve.free_port()
    assert 1024 <= port <= 65535
    with pytest.raises(serve.ServeError, match="did not answer"):
        serve.wait_ready(f"http://127.0.0.1:{port}", timeout=0.5)
    ended = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    ended.wait()
    with pytest.raises(serve.ServeError, match="exited with code 0"):
        serve.wait_ready(f"http://127.0.0.1:{port}", ended, timeout=5)
    serve.stop(ended)  # already ended: nothing to do
    sleeping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    serve.stop(sleeping)
    assert sleeping.returncode == -signal.SIGTERM


@pytest.mark.slow
def test_serve_answers_http_on_loopback(tmp_path):
    port = serve.free_port()
    proc = serve.start(port=port, host="127.0.0.1", runs=tmp_path / "runs", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    body = resp.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert body == "ok", f"no answer on port {port} (exit code {proc.poll()})"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode is not None


# ---- helpers (no Streamlit session needed) ------------------------------------------------------
def test_schema_fields_read_types_ranges_and_help():
    from workbench.distill import method_schema
    from workbench.distill.forms import schema_fields

    fields = {f.name: f for f in schema_fields(method_schema("kd"))}
    assert fields["temperature"].kind == "number"
    assert fields["temperature"].default == 4.0 and fields["temperature"].maximum == 100.0
    assert fields["temperature"].help
    dkd = {f.name: f for f in schema_fields(method_schema("dkd"))}
    assert set(dkd) >= {"alpha", "beta", "temperature"}
    mt = {f.name: f for f in schema_fields(method_schema("multi_teacher"))}
    assert mt["weighting"].kind == "choice" and mt["weighting"].choices == ("mean", "confidence")
    at = {f.name: f for f in schema_fields(method_schema("at"))}
    assert at["student_layers"].kind == "list" and at["student_layers"].optional
    bd = {f.name: f for f in schema_fields(method_schema("bdkd"))}
    assert bd["adaptive"].kind == "boolean"


def test_every_method_schema_maps_to_known_widgets():
    from workbench.distill import list_methods, method_schema
    from workbench.distill.forms import schema_fields

    for name in list_methods():
        for f in schema_fields(method_schema(name)):
            assert f.kind in ("number", "integer", "boolean", "choice", "text", "list", "json"), (name, f)


def test_new_run_params_cover_the_config(tiny_store):
    from workbench.run_form import NO_TEACHER, new_run_params
    from workbench.runs import RunStore

    run = RunStore(tiny_store["root"]).load(tiny_store["kd"])
    params = new_run_params(run.config)
    assert params["dataset"] == "digits" and params["student"] == "mlp"
    assert params["teacher"] == f"run:{tiny_store['teacher']}"
    assert params["methods"] == "kd" and float(params["w.kd"]) == pytest.approx(0.9)
    assert float(params["ce"]) == pytest.approx(0.1)
    assert params["epochs"] == "2" and params["seed"] == "0"
    assert params["tprec"] == "float32"
    data = run.config.model_dump(mode="json")
    data["distill"]["teacher_precision"] = "bfloat16"
    assert new_run_params(data)["tprec"] == "bfloat16"
    scratch = new_run_params(RunStore(tiny_store["root"]).load(tiny_store["teacher"]).config)
    assert scratch["teacher"] == NO_TEACHER and scratch["methods"] == "none" and "tprec" not in scratch


def test_new_run_params_round_trip_through_the_run_form(tiny_store):
    from workbench.run_form import config_from_form, form_from_config, new_run_params
    from workbench.runs import RunStore

    config = RunStore(tiny_store["root"]).load(tiny_store["kd"]).config
    again = config_from_form(form_from_config(config))
    assert new_run_params(again) == new_run_params(config)
    assert again.kind == "distill" and again.distill.methods[0].weight == pytest.approx(0.9)


# ---- the app: navigation and shared behaviour -------------------------------------------------
def test_main_registers_every_page(monkeypatch, tiny_store):
    import ast
    from pathlib import Path

    at = make_app(monkeypatch, tiny_store["root"])
    no_exception(at)
    assert at.title[0].value == "Distillation Workbench"
    tree = ast.parse((Path(__file__).resolve().parent.parent / "app" / "main.py").read_text())
    pages = next(
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "PAGES"
    )
    assert [p[3] for p in pages] == [
        "home", "training", "experiments", "data", "cams", "similarity", "landscape", "agreement", "compare",
        "leaderboard", "doctor", "classroom",
    ]
    assert all(p[0] == f"{p[3]}.py" for p in pages)


def test_unknown_run_id_in_url_is_a_message(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/training.py", run="../../etc/passwd")
    at.run()
    no_exception(at)
    assert any("not found in the run store" in w.value for w in at.warning)
    assert at.query_params["run"] in (tiny_store["teacher"], tiny_store["scratch"], tiny_store["kd"])


def test_bad_workspace_in_url_is_a_message(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/compare.py", workspace="../x")
    at.run()
    no_exception(at)
    assert any("workspace" in w.value for w in at.warning)


def test_workspace_filters_runs_to_its_jobs(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/compare.py", workspace="alice")
    at.run()
    no_exception(at)
    assert any("No runs yet" in i.value for i in at.info)  # alice has no jobs, so no runs
    at.query_params["workspace"] = "*"
    at.run()
    no_exception(at)
    assert figures(at)  # the teacher view sees every run


def test_guard_turns_exceptions_into_one_line(monkeypatch, tiny_store):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_RUNS", tiny_store["root"])

    def script():
        from app.lib import layout

        with layout.page("x"):
            raise ValueError("first line\nsecond line\n  Traceback stuff")

    at = AppTest.from_function(script, default_timeout=60)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["first line"]


def test_bound_number_round_trips_through_the_url(monkeypatch, tiny_store):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_RUNS", tiny_store["root"])

    def script():
        import streamlit as st

        from app.lib import bindings

        n = bindings.bound_number("Samples", "n_samples", 10, min_value=1, max_value=100)
        st.write(f"n_samples={n}")

    at = AppTest.from_function(script, default_timeout=60)
    at.query_params["n_samples"] = "42"
    at.run()
    assert at.number_input[0].value == 42 and at.query_params["n_samples"] == "42"
    at.number_input[0].set_value(7).run()
    assert at.query_params["n_samples"] == "7" and "n_samples=7" in at.markdown[0].value
    at2 = AppTest.from_function(script, default_timeout=60)
    at2.query_params["n_samples"] = "abc"
    at2.run()
    assert not at2.exception and at2.number_input[0].value == 10 and at2.warning


def test_sliders_are_bound_like_every_other_widget(monkeypatch, tiny_store):
    """A slider and a select slider take a fresh link value, keep the user's choice while the URL holds
    what they wrote, and warn about a bad link value: the same path as the other bound widgets."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_RUNS", tiny_store["root"])

    def script():
        import streamlit as st

        from app.lib import bindings

        t = bindings.bound_slider("Temperature T", "temperature", 4.0, min_value=0.5, max_value=20.0, step=0.5)
        c = bindings.bound_select_slider("Checkpoint", "checkpoint", ["epoch_001", "epoch_002", "final"])
        st.write(f"{t} {c}")

    at = AppTest.from_function(script, default_timeout=60)
    at.query_params["temperature"] = "2.5"
    at.query_params["checkpoint"] = "epoch_001"
    at.run()
    assert not at.exception and not at.warning
    assert at.slider[0].value == 2.5 and at.select_slider[0].value == "epoch_001"
    at.slider[0].set_value(6.0).run()
    assert at.query_params["temperature"] == "6.0" and at.select_slider[0].value == "epoch_001"
    at.query_params["checkpoint"] = "final"  # a new link value wins over the session's choice
    at.run()
    assert at.select_slider[0].value == "final" and at.slider[0].value == 6.0
    bad = AppTest.from_function(script, default_timeout=60)
    bad.query_params["temperature"] = "99"
    bad.query_params["checkpoint"] = "epoch_999"
    bad.run()
    assert not bad.exception and bad.slider[0].value == 4.0 and bad.select_slider[0].value == "final"
    assert sorted(w.value.split(":")[0] for w in bad.warning) == ["Checkpoint", "Temperature T"]


def test_home_is_served_at_the_root_and_at_slash_home(monkeypatch, tiny_store):
    """Streamlit serves the default page at ``/`` only; the Home script is also registered, hidden, at
    ``home`` so that ``/home`` opens it (the browser test opens ``/home`` for real)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_RUNS", tiny_store["root"])

    def script():
        import streamlit as st

        from app.main import build_pages

        pages = [p for section in build_pages().values() for p in section]
        st.write(repr([(p.url_path, p.title, p.visibility) for p in pages]))

    at = AppTest.from_function(script, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    pages = eval(at.markdown[0].value)  # noqa: S307 - our own repr of strings and booleans
    homes = [p for p in pages if p[1] == "Home / New run"]
    assert homes == [("", "Home / New run", "visible"), ("home", "Home / New run", "hidden")]  # "" is "/"
    assert [p[0] for p in pages if p[2] == "visible"][1:] == [
        "training", "experiments", "data", "cams", "similarity", "landscape", "agreement", "compare", "leaderboard",
        "doctor", "classroom",
    ]


def test_teacher_of_a_run_is_shaped_from_its_dataset(monkeypatch, tiny_store):
    """The MLP teacher of a digits run takes 1x8x8 images (an MNIST-shaped guess would not even build
    the MLP's first layer to fit): the loader shapes it from the run's dataset."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_RUNS", tiny_store["root"])

    def script(run_id: str):
        import streamlit as st
        import torch

        from app.lib import loaders, state

        run = state.get_run(run_id)
        data = loaders.dataset(run)
        with torch.no_grad():
            out = loaders.require_teacher(run)(torch.zeros(2, *data.image_shape))
        st.write(f"{tuple(data.image_shape)} {tuple(out.shape)}")

    at = AppTest.from_function(script, args=(tiny_store["kd"],), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.markdown[0].value == "(1, 8, 8) (2, 10)"
