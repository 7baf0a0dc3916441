"""The ``workbench`` command.

Every sub-command is thin: it collects choices, calls the library and prints. Bad input exits
with code 2 and one line on stderr (no traceback); a run that fails exits with code 1.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from workbench.commands.classroom import class_app
from workbench.commands.data import data_app
from workbench.commands.lessons import lessons_app
from workbench.commands.models import methods_app, models_app
from workbench.commands.recipes import recipes_app
from workbench.commands.teachers import teachers_app
from workbench.console import ProgressBar, friendly
from workbench.console import fmt as _fmt
from workbench.jobs.cli import jobs_app
from workbench.serve import typer_command
from workbench.sweep.cli import experiments_app
from workbench.vocabulary import DOCTOR_N_SAMPLES

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Distillation Workbench: train, distill, inspect."
)
train_app = typer.Typer(
    no_args_is_help=True, help="Train a teacher, a scratch student or a distilled student."
)
runs_app = typer.Typer(
    no_args_is_help=True, help="The run store: list, show, tag, annotate, remove, clean up runs."
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(methods_app, name="methods")
app.add_typer(teachers_app, name="teachers")
app.add_typer(recipes_app, name="recipes")
app.add_typer(train_app, name="train")
app.add_typer(runs_app, name="runs")
app.add_typer(jobs_app, name="jobs")
app.add_typer(experiments_app, name="experiments")
app.add_typer(lessons_app, name="lessons")
app.add_typer(class_app, name="class")
app.command("app", help="Start the Streamlit workbench and print its URL.")(typer_command())

# piped output (no terminal) gets a wide console, so that tables are not cut
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

RunsOpt = typer.Option(
    None, "--runs", "-r", help="the run store's folder (default $WORKBENCH_RUNS or ./runs)"
)


def _options(pairs: list[str]) -> dict[str, Any]:
    from workbench.config import ConfigError, apply_overrides

    try:
        return apply_overrides({}, pairs)
    except ConfigError as e:
        raise ValueError(str(e).replace("--set", "--option")) from None


# ---- training -----------------------------------------------------------------------------
@contextlib.contextmanager
def _stop_on_interrupt(cancel: Any) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): ask the run to stop after the current step (it stays loadable,
    ``stopped``); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if cancel.cancelled:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        cancel.cancel("interrupted")
        err.print("stopping after this step (Ctrl-C again to abort)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _print_warnings(event: Any) -> None:
    """Subscriber: each run warning as one line on stderr, as it happens."""
    from workbench.train import RunWarning

    if isinstance(event, RunWarning):
        err.print(f"warning: {event.message}", markup=False, highlight=False)


class _RecipeChoice:
    """What `train ... --recipe NAME` was given: the recipe, --root, --epochs, --method, --teacher."""

    def __init__(
        self,
        name: str,
        root: Path | None,
        epochs: int | None,
        method: str | None = None,
        teacher: str | None = None,
    ) -> None:
        self.name, self.root, self.epochs = name, root, epochs
        self.method, self.teacher = method or "kd", teacher


def _recipe_config(kind: str, choice: _RecipeChoice, store: Any) -> dict[str, Any]:
    """The run config of ``choice``'s recipe for `train {kind}`."""
    from workbench.runs.recipe_runs import recipe_config

    root = None if choice.root is None else str(choice.root)
    try:
        return recipe_config(
            kind, choice.name, store=store, root=root, epochs=choice.epochs, method=choice.method,
            teacher=choice.teacher,
        )
    except ValueError as err:
        text = str(err)
        raise ValueError(f"--{text}" if text.startswith("teacher:") else text) from None


def _train(
    kind: str,
    config: Path | None,
    overrides: list[str],
    runs: Path | None,
    quiet: bool,
    resume: str | None = None,
    recipe: _RecipeChoice | None = None,
) -> None:
    from workbench.config import apply_overrides
    from workbench.runs import RunStore
    from workbench.runtime import CancelToken
    from workbench.train import run
    from workbench.validate import load_config, validate_run_config

    store = RunStore(runs)
    if recipe is not None:
        if config is not None or resume is not None:
            raise ValueError("--recipe: start from a recipe or from --config / --resume, not both")
        cfg = validate_run_config(apply_overrides(_recipe_config(kind, recipe, store), overrides))
    elif resume is not None and config is None:  # the run's own config, with --set applied
        data = store.load(resume).config.model_dump(mode="json")
        cfg = validate_run_config(apply_overrides(data, overrides))
    else:
        cfg = load_config(config, overrides, kind=kind)
    if cfg.kind != kind:
        raise ValueError(f"kind: the config says {cfg.kind!r} but the command is `train {kind}`")
    subscribers: list[Any] = [] if quiet else [ProgressBar(err)]
    cancel = CancelToken()
    try:
        with _stop_on_interrupt(cancel):
            result = run(
                cfg, store=store, subscribers=[*subscribers, _print_warnings], cancel=cancel, resume=resume
            )
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    finally:
        for s in subscribers:
            s.close()
    for link in result.link_ids[:-1]:  # the earlier links of a chain (ban, takd)
        info = store.load(link).summary()
        out.print(
            f"run {link} {info['status']}: test acc {_fmt(info.get('test_acc'), True)}", highlight=False
        )
    s = result.summary
    line = f"run {result.run_id} {result.status}: test acc {_fmt(s.get('test_acc'), True)}"
    if "agreement" in s:
        line += f", agreement {_fmt(s.get('agreement'), True)}"
    out.print(line + f", {s.get('seconds', 0):.1f}s", highlight=False)
    if cancel.cancelled:
        raise typer.Exit(130)


ConfigOpt = typer.Option(None, "--config", "-c", help="run config YAML (see configs/)")
SetOpt = typer.Option([], "--set", "-s", help="override a field: key.sub=value (repeatable)")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bar")
ResumeOpt = typer.Option(
    None,
    "--resume",
    help="continue a stopped, interrupted or failed run from its last epoch (its config is used "
    "unless --config is given; only train.epochs may change, e.g. --set train.epochs=10)",
)


RecipeOpt = typer.Option(
    None, "--recipe", help="start from a recipe's config (`workbench recipes list`); --set still applies"
)
RootOpt = typer.Option(None, "--root", help="with --recipe: the folder holding the dataset's files")
EpochsOpt = typer.Option(
    None, "--epochs", help="with --recipe: epochs (default 240; the learning-rate milestones scale with it)"
)


def _choice(recipe: str | None, root: Path | None, epochs: int | None, **more: Any) -> _RecipeChoice | None:
    if recipe is None:
        given = [k for k, v in {"root": root, "epochs": epochs, **more}.items() if v is not None]
        if given:
            raise ValueError(f"--{given[0]}: goes with --recipe NAME (or set it in the config with --set)")
        return None
    return _RecipeChoice(recipe, root, epochs, **more)


@train_app.command("teacher")
@friendly
def train_teacher(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    runs: Path | None = RunsOpt,
    quiet: bool = QuietOpt,
    resume: str | None = ResumeOpt,
    recipe: str | None = RecipeOpt,
    root: Path | None = RootOpt,
    epochs: int | None = EpochsOpt,
) -> None:
    """Train a teacher with cross-entropy (--recipe NAME: the recipe's teacher)."""
    _train("teacher", config, set_, runs, quiet, resume, _choice(recipe, root, epochs))


@train_app.command("student")
@friendly
def train_student(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    runs: Path | None = RunsOpt,
    quiet: bool = QuietOpt,
    resume: str | None = ResumeOpt,
    recipe: str | None = RecipeOpt,
    root: Path | None = RootOpt,
    epochs: int | None = EpochsOpt,
) -> None:
    """Train a student from scratch, the baseline (--recipe NAME: the recipe's student)."""
    _train("student", config, set_, runs, quiet, resume, _choice(recipe, root, epochs))


@train_app.command("distill")
@friendly
def train_distill(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    runs: Path | None = RunsOpt,
    quiet: bool = QuietOpt,
    resume: str | None = ResumeOpt,
    recipe: str | None = RecipeOpt,
    root: Path | None = RootOpt,
    epochs: int | None = EpochsOpt,
    method: str | None = typer.Option(
        None,
        "--method",
        help="with --recipe: kd (default), dkd, fitnet, at, sp, rkd, pkt, nst or crd (the authors' objective)",
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        help="with --recipe: run:ID of the teacher run or a weights file (default: the store's latest "
        "completed teacher of the recipe's model and dataset)",
    ),
) -> None:
    """Train a student distilled from one or more teachers (--recipe NAME: the recipe's pair)."""
    choice = _choice(recipe, root, epochs, method=method, teacher=teacher)
    _train("distill", config, set_, runs, quiet, resume, choice)


# ---- runs -----------------------------------------------------------------------------------
@runs_app.command("list")
@friendly
def runs_list(
    runs: Path | None = RunsOpt,
    kind: str | None = typer.Option(None, help="teacher, student or distill"),
    status: str | None = typer.Option(
        None, help="running, completed, failed, stopped, interrupted or damaged"
    ),
    dataset: str | None = typer.Option(None),
    model: str | None = typer.Option(None),
    method: str | None = typer.Option(None),
    tag: list[str] = typer.Option([], "--tag", help="only runs with this tag (repeat: all of them)"),
    search: str = typer.Option(
        "",
        "--search",
        help="only runs where every word is in the id, name, model, method, dataset, tags "
        "or note (tag:x: tagged x)",
    ),
) -> None:
    """List the store's runs with their tags; damaged runs are listed with the reason."""
    from workbench.runs import RunStore, matches, parse_tags

    query = " ".join([*(f"tag:{t}" for t in parse_tags(tag)), search])
    runs = RunStore(runs).list(kind=kind, status=status, dataset=dataset, model=model, method=method)
    table = Table(
        "id", "kind", "status", "dataset", "model", "method", "epochs", "test acc", "agreement", "tags"
    )
    damaged = []
    pairs = [(r, r.summary()) for r in runs]
    rows = [s for r, s in pairs if matches(r, query, summary=s)]
    for s in rows:
        table.add_row(
            s["id"],
            s["kind"],
            f"{s['status']}: {s['error']}" if s["error"] else s["status"],  # why it failed, when recorded
            s["dataset"],
            s["model"],
            s["method"],
            _fmt(s["epochs"]),
            _fmt(s["test_acc"], True),
            _fmt(s["agreement"], True),
            Text(" ".join(s["tags"])),  # plain text: a tag such as ':x:' is not an emoji code
        )
        if s["damage"]:
            damaged.append((s["id"], s["damage"]))
    out.print(table if rows else "no runs")
    for run_id, why in damaged:
        err.print(
            f"damaged: {run_id}: {why} (`workbench runs rm {run_id}` removes it)",
            markup=False,
            highlight=False,
        )


@runs_app.command("show")
@friendly
def runs_show(
    run_id: str = typer.Argument(..., help="run id (a unique prefix is enough)"),
    runs: Path | None = RunsOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a run's status, summary, per-epoch metrics and checkpoints."""
    from workbench.runs import RunStore
    from workbench.runs.recipe_runs import published_beside

    store = RunStore(runs)
    run = store.load(run_id)
    damage = run.damage
    if damage:
        if as_json:
            out.print_json(
                json.dumps({"status": run.status, "damage": damage, "checkpoints": run.checkpoints()})
            )
            return
        out.print(f"[bold]{run.id}[/bold]  damaged: {damage}", highlight=False)
        out.print("checkpoints: " + (", ".join(run.checkpoints()) or "none"), highlight=False)
        return
    info = {"status": run.status, "summary": run.metrics.get("summary", {}), "checkpoints": run.checkpoints()}
    steps = run.step_metrics()
    published = published_beside(run, store)
    if as_json:
        step_info = {"records": len(steps), "damage": steps.damage}
        epochs = run.metrics.get("epochs", [])
        out.print_json(
            json.dumps({**info, "epochs": epochs, "step_metrics": step_info, "published": published})
        )
        return
    st = info["status"]
    out.print(
        f"[bold]{run.id}[/bold]  {st.get('kind')}  {st.get('status')}  created {st.get('created')}  version {st.get('version')}"
    )
    if st.get("error"):
        out.print(f"error: {st['error']}", markup=False)
    for k, v in info["summary"].items():
        out.print(f"  {k}: {_fmt(v)}", highlight=False)
    for p in published:
        diff = "" if p["difference"] is None else f" (this run {p['run']:.2f}, {p['difference']:+.2f})"
        teacher = f" from {p['teacher']}" if p["teacher"] else ""
        out.print(
            f"  published: {p['label']} {p['model']}{teacher} on {p['dataset']}: {p['top1']:.2f}%{diff}; {p['citation']}",
            markup=False,
            highlight=False,
        )
    epochs = run.metrics.get("epochs", [])
    if epochs:
        table = Table("epoch", "train loss", "train acc", "test acc", "agreement", "KL(t||s)", "ECE", "s")
        for e in epochs:
            table.add_row(
                str(e["epoch"]),
                _fmt(e.get("train_loss")),
                _fmt(e.get("train_acc"), True),
                _fmt(e.get("test_acc"), True),
                _fmt(e.get("agreement"), True),
                _fmt(e.get("kl_teacher_student")),
                _fmt(e.get("ece")),
                f"{e.get('seconds', 0):.1f}",
            )
        out.print(table)
    if steps.damage:
        line = f"step metrics: damaged: {steps.damage} ({len(steps)} records before it kept)"
    else:
        line = f"step metrics: {len(steps)} records"
    out.print(line, markup=False, highlight=False)
    out.print("checkpoints: " + (", ".join(info["checkpoints"]) or "none"))


@runs_app.command("tag")
@friendly
def runs_tag(
    run_id: str = typer.Argument(..., help="run id (a unique prefix is enough)"),
    tags: list[str] = typer.Argument(
        ..., help="tags: letters, digits, '-', '_', '.', ':' (at most 40 characters)"
    ),
    runs: Path | None = RunsOpt,
    remove: bool = typer.Option(False, "--remove", help="remove these tags instead of adding them"),
) -> None:
    """Add tags to a run (or remove them with --remove); prints the run's tags."""
    from workbench.runs import RunStore, add_tags, remove_tags

    run = RunStore(runs).load(run_id)
    notes = (remove_tags if remove else add_tags)(run, tags)
    shown = " ".join(notes.tags) or "none"
    out.print(f"{run.id}: tags {shown}", markup=False, highlight=False, emoji=False)


@runs_app.command("note")
@friendly
def runs_note(
    run_id: str = typer.Argument(..., help="run id (a unique prefix is enough)"),
    text: str | None = typer.Argument(None, help="the note ('-' reads it from stdin); none: print the note"),
    runs: Path | None = RunsOpt,
    clear: bool = typer.Option(False, "--clear", help="remove the run's note"),
) -> None:
    """Set a run's note (free text, at most 10,000 characters), clear it, or print it."""
    from workbench.runs import RunStore, read_annotations, set_note

    run = RunStore(runs).load(run_id)
    if clear and text is not None:
        raise ValueError("runs note: give a note or --clear, not both")
    if text is None and not clear:
        notes = read_annotations(run)
        if notes.damage:
            err.print(f"damaged: {notes.damage}", markup=False, highlight=False)
        out.print(notes.note or "no note", markup=False, highlight=False, emoji=False)
        return
    body = "" if clear else (sys.stdin.read() if text == "-" else text)
    set_note(run, body)
    done = "cleared" if clear or not body.strip() else "saved"
    out.print(f"{run.id}: note {done}", markup=False, highlight=False)


@runs_app.command("rm")
@friendly
def runs_rm(
    run_ids: list[str] = typer.Argument(..., help="run ids (an exact id or a unique prefix)"),
    runs: Path | None = RunsOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
    force: bool = typer.Option(
        False, "--force", help="also remove a run whose process is still running (its training then stops)"
    ),
) -> None:
    """Delete runs. A running run is refused unless --force; damaged runs can be removed."""
    from workbench.runs import RunStore

    store = RunStore(runs)
    ids = list(dict.fromkeys(store.resolve(r) for r in run_ids))  # all resolve before any is deleted
    if not force:
        live = [i for i in ids if store.load(i).status.get("status") == "running"]
        if live:
            raise ValueError(
                f"runs rm: {', '.join(live)} still running; stop it first (`workbench jobs stop`) or pass --force"
            )
    if not yes:
        if not sys.stdin.isatty():
            raise ValueError("runs rm: pass --yes to delete without a prompt")
        typer.confirm(f"delete {len(ids)} run(s)?", abort=True)
    for run_id in ids:
        out.print(f"deleted {store.remove(run_id, force=force)}", markup=False, highlight=False)


@runs_app.command("gc")
@friendly
def runs_gc(
    runs: Path | None = RunsOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="only list what would be removed"),
) -> None:
    """Remove what killed processes left: .staging-*, .trash-*, *.tmp and *.part older than a minute."""
    from workbench.runs import RunStore

    paths = RunStore(runs).gc(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for p in paths:
        out.print(f"{verb} {p}", markup=False, highlight=False)
    out.print(f"{verb} {len(paths)} leftover(s)" if paths else "nothing to clean", highlight=False)


# ---- doctor -------------------------------------------------------------------------------
@app.command("doctor")
@friendly
def doctor(
    run_id: str = typer.Argument(
        ..., help="the student run to examine (a unique prefix of its id is enough)"
    ),
    runs: Path | None = RunsOpt,
    scratch: str | None = typer.Option(
        None, "--scratch", help="a scratch-student run to compare sharpness with"
    ),
    teacher: str | None = typer.Option(
        None, "--teacher", help="override the run's teacher: shipped:NAME, teacher:NAME or run:ID"
    ),
    n_samples: int = typer.Option(DOCTOR_N_SAMPLES, "--n-samples", help="test images the analyses use"),
    checkpoint: str = typer.Option(
        "final", "--checkpoint", help="the student's checkpoint (final, best, epoch_003, ...)"
    ),
    verify_: bool = typer.Option(
        False,
        "--verify",
        help="run the top finding's experiment (same seed, into the same store) and report whether it helped",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="epochs of the --verify run (default: the run's)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report (and the verification) as JSON"),
) -> None:
    """Diagnose a student: ranked findings with evidence, explanation and a next experiment; --verify runs it."""
    from workbench.diagnosis import diagnose, verify
    from workbench.runs import RunStore

    store = RunStore(runs)
    run = store.load(run_id)
    scratch_run = store.load(scratch) if scratch else None
    with err.status(f"examining {run.id} ..."):
        report = diagnose(
            run,
            teacher=teacher,
            scratch_run=scratch_run,
            n_samples=n_samples,
            checkpoint=checkpoint,
            store=store,
        )
    result = None
    if verify_ and not report.healthy:
        top = report.warnings[0]
        what = top.experiment.text if top.experiment else ""
        with err.status(f"verifying '{top.rule}': {what}"):
            result = verify(run, report, epochs=epochs, teacher=teacher, n_samples=n_samples, store=store)
    if as_json:
        data = report.to_dict()
        if verify_:
            data["verify"] = None if result is None else result.to_dict()
        out.print_json(json.dumps(data))
        return
    out.print(report.to_text(), markup=False, highlight=False)
    if verify_:
        out.print("")
        text = "Nothing to verify: no warning-level finding." if result is None else result.to_text()
        out.print(text, markup=False, highlight=False)


# ---- sweeps -------------------------------------------------------------------------------
@app.command("sweep")
@friendly
def sweep(
    file: Path = typer.Argument(..., help="sweep YAML (see configs/sweep_*.yaml)"),
    runs: Path | None = RunsOpt,
    backend: str | None = typer.Option(None, "--backend", help="local or ray (overrides the file)"),
    workers: int | None = typer.Option(None, "--workers", help="parallel trials (overrides the file)"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address to join (default: a local instance)"
    ),
    set_: list[str] = SetOpt,
    csv_path: Path | None = typer.Option(
        None, "--csv", help="summary CSV (default: <runs>/sweeps/<name>.csv)"
    ),
) -> None:
    """Run a grid of trials (fields x seeds) into the run store, skipping completed ones."""
    from workbench.runs import RunStore
    from workbench.sweep import check_name, expand_trials, load_sweep, run_sweep, summarize, write_summary_csv

    spec = load_sweep(file, set_)
    if backend is not None:
        if backend not in ("local", "ray"):
            raise ValueError(f"--backend: unknown backend {backend!r}; expected local or ray")
        spec.backend = backend  # type: ignore[assignment]
    if workers is not None:
        if workers < 1:
            raise ValueError(f"--workers: expected a whole number >= 1, got {workers}")
        spec.workers = workers
    if address is not None:
        spec.address, spec.backend = address, "ray"
    store = RunStore(runs)
    total = len(expand_trials(spec))
    count = {"n": 0}

    def report(o):
        count["n"] += 1
        acc = o.summary.get("test_acc")
        tag = "skipped (completed)" if o.skipped else o.status
        err.print(
            f"[{count['n']}/{total}] {o.trial.group} seed {o.trial.seed}: {tag}, test acc {_fmt(acc, True)}  {o.run_id}",
            markup=False,
            highlight=False,
        )

    outcomes = run_sweep(spec, store, on_trial=report)
    rows = summarize(outcomes)
    table = Table("trial", "seeds", "test acc", "agreement", "s / epoch", "failed")
    for r in rows:
        table.add_row(
            r["group"],
            str(r["seeds"]),
            f"{100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f}",
            "-"
            if r["agreement_mean"] != r["agreement_mean"]
            else f"{100 * r['agreement_mean']:.2f} ± {100 * r['agreement_std']:.2f}",
            f"{r['sec_per_epoch_mean']:.2f} ± {r['sec_per_epoch_std']:.2f}",
            str(r["failed"]),
        )
    out.print(table)
    target = csv_path or store.root / "sweeps" / f"{check_name(spec.name)}.csv"
    out.print(f"summary CSV: {write_summary_csv(rows, target)}")


# ---- demo ---------------------------------------------------------------------------------
@app.command("demo")
@friendly
def demo(
    epochs: int = typer.Option(None, "--epochs", help="epochs per student (default: the demo's own)"),
    runs: Path | None = RunsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """On embedded MNIST: shipped teacher, a scratch and a KD student of the same small net."""
    from workbench.demo import DEMO_EPOCHS, run_demo

    rows = run_demo(epochs=epochs or DEMO_EPOCHS, store=runs, progress=not quiet, console=err)
    table = Table(
        "model", "method", "params", "test acc", "agreement w/ teacher", "KL(t||s)", "ECE", "train s", "run"
    )
    for r in rows:
        table.add_row(
            r["model"],
            r["method"],
            f"{r['params']:,}",
            _fmt(r["test_acc"], True),
            _fmt(r.get("agreement"), True),
            _fmt(r.get("kl_teacher_student")),
            _fmt(r.get("ece")),
            f"{r['seconds']:.1f}",
            r.get("run_id") or "-",
        )
    out.print(table)


def main() -> None:
    """Entry point of the ``workbench`` command."""
    app()


if __name__ == "__main__":
    main()
