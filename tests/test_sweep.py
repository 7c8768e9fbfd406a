"""Sweeps on Optuna: shared studies, worker processes, pruning, dead workers, bad input,
and a real PostgreSQL server when its binaries are installed."""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rnnlab.tasks import TASKS

optuna = pytest.importorskip("optuna")

from test_charlm_cli import assert_user_error, run_cli  # noqa: E402

from rnnlab import sweep, train  # noqa: E402
from rnnlab.config import DenoiseConfig  # noqa: E402
from rnnlab.runner import train_run  # noqa: E402

# Tiny forecast trials (about a second each on numpy).
FORECAST_SMALL = ["--builtin-points", "600", "--epochs", "3", "--backend", "numpy", "--quiet"]


def space_file(tmp_path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(storage: str, name: str):
    return optuna.load_study(study_name=name, storage=storage)


def assert_complete_study(study, trials: int, out: Path) -> None:
    """Exactly ``trials`` finished trials, each number once, each with its own run directory."""
    states = [t.state for t in study.get_trials()]
    finished = [
        t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(finished) == trials, states
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers))
    dirs = [t.user_attrs["run_dir"] for t in finished]
    assert len(set(dirs)) == trials
    for d in dirs:
        assert Path(d).parent == out.resolve() and (Path(d) / "metrics.jsonl").exists()


def test_two_worker_processes_share_one_sqlite_study(tmp_path, capsys):
    out = tmp_path / "sw"
    code, stdout, err = run_cli(
        capsys, "sweep", "forecast", "--trials", "5", "--workers", "2", "--out", out, *FORECAST_SMALL
    )
    assert code == 0, err
    study = load(f"sqlite:///{out / 'study.db'}", "forecast-sweep")
    assert_complete_study(study, 5, out)
    # Two workers may both start a trial when one is left; the later one is marked surplus (failed,
    # nothing trained) and left out of the summary.
    assert {t.user_attrs["status"] for t in study.get_trials()} <= {"complete", "pruned", "invalid", "surplus"}
    assert all(
        t.state == optuna.trial.TrialState.FAIL for t in study.get_trials() if t.user_attrs["status"] == "surplus"
    )
    summary = json.loads((out / "sweep.json").read_text())
    assert len(summary["trials"]) == 5 and summary["best"]["value"] == min(
        t.value for t in study.get_trials() if t.value is not None
    )
    best_toml = (out / "best.toml").read_text()
    for key in summary["best"]["params"]:
        assert f"{key} = " in best_toml
    assert (out / "history.png").stat().st_size > 0 and "| trial | state |" in (out / "trials.md").read_text()
    assert "best: trial" in stdout
    # report.html compares the finished trials, best first.
    page = (out / "report.html").read_text()
    complete = sorted(
        (t for t in study.get_trials() if t.user_attrs.get("status") == "complete"), key=lambda t: t.value
    )
    names = [Path(t.user_attrs["run_dir"]).name for t in complete]
    positions = [page.index(f'<p class="where">{Path(t.user_attrs["run_dir"])}</p>') for t in complete]
    assert positions == sorted(positions) and len(names) == page.count('<section class="run">')
    # The same command again joins the finished study and runs nothing more.
    assert run_cli(capsys, "sweep", "forecast", "--trials", "5", "--out", out, *FORECAST_SMALL)[0] == 0
    assert len(load(f"sqlite:///{out / 'study.db'}", "forecast-sweep").get_trials()) == len(study.get_trials())


def test_pruner_stops_a_bad_trial_at_an_evaluation(tmp_path):
    """Two good trials, then one with a learning rate too small to learn: the median pruner
    stops it at its first evaluation after training starts."""
    cfg = DenoiseConfig(steps=60, eval_every=20, val_sequences=64, test_sequences=64, backend="numpy", hidden_size=8)
    settings = sweep.SweepSettings(
        task="denoise",
        base_config=cfg.__dict__.copy(),
        space={"lr": {"low": 1e-8, "high": 1e-1, "log": True}},
        trials=3,
        study="prune",
        out=str(tmp_path / "sw"),
        quiet=True,
    )
    study = sweep.open_study(settings, create=True)
    for lr in (1e-2, 1e-2, 1e-8):  # queued trials run in this order
        study.enqueue_trial({"lr": lr})
    result = sweep.run_sweep(settings)
    states = [(r["params"]["lr"], r["state"]) for r in result["trials"]]
    assert states == [(1e-2, "complete"), (1e-2, "complete"), (1e-8, "pruned")]
    pruned = result["trials"][2]
    assert pruned["steps"] == 20  # stopped at its first evaluation, not run to 60 steps
    metrics = [json.loads(line) for line in (Path(pruned["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 20


def test_a_small_study_lets_tpe_model_after_a_third_of_it():
    """Optuna's 10 random start-up trials would make a 12-trial study nearly random search."""
    assert [sweep.startup_trials(n) for n in (3, 12, 30, 100)] == [2, 4, 10, 10]
    settings = sweep.SweepSettings(task="denoise", base_config={"seed": 0}, space={}, trials=12, study="s", out="o")
    assert sweep._sampler(settings)._n_startup_trials == 4


def test_after_evaluation_hook_stops_a_run(tmp_path):
    seen = []

    def hook(step, record):
        seen.append((step, record["val_loss"]))
        return "stop here" if step >= 10 else None

    cfg = DenoiseConfig(steps=50, eval_every=5, val_sequences=32, test_sequences=32, backend="numpy")
    with train.after_evaluation(hook):
        summary = train_run(cfg, tmp_path / "run", quiet=True)
    assert summary["stop_reason"] == "stop here" and summary["step"] == 10
    assert [s for s, _ in seen] == [5, 10]
    summary = train_run(cfg, tmp_path / "run2", quiet=True)  # no hook outside the block
    assert summary["step"] == 50


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_worker_loses_nothing_else(tmp_path, capsys):
    """SIGKILL a worker mid-trial: its trial is marked failed and re-run with the same
    parameters by the next worker, and the study still ends with every trial it asked for."""
    out = tmp_path / "sw"
    storage = f"sqlite:///{out / 'study.db'}"
    space = space_file(tmp_path, "[lr]\nchoices = [0.003]\n[hidden_size]\nchoices = [8, 12]\n")
    common = [
        "sweep",
        "forecast",
        "--trials",
        "2",
        "--out",
        str(out),
        "--space",
        str(space),
        "--heartbeat-seconds",
        "1",
        "--builtin-points",
        "400",
        "--backend",
        "numpy",
        "--quiet",
    ]
    log = open(tmp_path / "slow.log", "w+")
    slow = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", *common, "--epochs", "100000"], stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def training_started():  # files only: opening the study while it is being created could race
            if slow.poll() is not None:
                log.seek(0)
                raise AssertionError(f"the slow worker exited early ({slow.returncode}): {log.read()[-2000:]}")
            return (out / "trial_0000" / "metrics.jsonl").exists()

        _wait_for(training_started, 120, "the first trial to start training")
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait()
    victim = load(storage, "forecast-sweep").trials[0]
    assert victim.state == optuna.trial.TrialState.RUNNING  # as the killed worker left it
    code, _, err = run_cli(capsys, *common, "--epochs", "2")
    assert code == 0, err
    study = load(storage, "forecast-sweep")
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[victim.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].state == optuna.trial.TrialState.COMPLETE
    assert_complete_study(study, 2, out)


def _sweep_workers(parent_pid: int) -> list[int]:
    """The pids of a sweep's worker processes: its children started by multiprocessing's spawn."""
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            ppid = int(Path(stat).read_text().rsplit(")", 1)[1].split()[1])
            cmdline = Path(stat).with_name("cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent_pid and b"spawn_main" in cmdline:
            pids.append(int(Path(stat).parent.name))
    return pids


def _state(pid: int) -> str:
    """The process's state letter from /proc (R running, S sleeping, T stopped, Z zombie), or ""."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    return _state(pid) not in ("", "Z")  # a zombie has exited; only its parent's wait is missing


def test_stop_flags_nest_and_share_one_request():
    """A sweep worker's flag and its run's: a signal in the run reaches both, a signal before the
    run makes the run start stopped, a second signal raises; ``request_all`` never escalates."""
    from rnnlab.stopping import StopFlag

    with StopFlag() as worker:
        with StopFlag() as run:
            os.kill(os.getpid(), signal.SIGTERM)
            assert run.requested and worker.requested and "SIGTERM" in worker.reason
        with StopFlag() as next_run:  # the worker's request carries into the next run
            assert next_run.requested
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)  # a second signal: stop now
    with StopFlag() as worker:
        StopFlag.request_all("parent gone")
        StopFlag.request_all("parent gone")  # Linux may send its parent-death signal twice
        assert worker.requested and worker.reason == "parent gone"
    assert not StopFlag._active
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_to_the_sweep_alone_stops_its_workers(tmp_path, signum):
    """SIGTSTP and SIGCONT to the main process of a two-worker sweep (a terminal's Ctrl-Z and `fg`)
    pause and resume its workers; SIGTERM to it (not its process group, as a scheduler sends it)
    reaches each worker once: their trials stop at a step, interrupted, and the sweep
    exits.  SIGKILL gives the main process no say: Linux sends each worker SIGHUP, with the same
    end.  Before, the first left the main process waiting on workers that never heard, the second
    left the workers training for nobody."""
    out = tmp_path / "sw"
    space = space_file(tmp_path, "[lr]\nchoices = [0.003]\n[hidden_size]\nchoices = [8, 12]\n")
    sweep_cmd = [sys.executable, "-m", "rnnlab", "sweep", "forecast", "--trials", "2", "--workers", "2"]
    log = open(tmp_path / "sweep.log", "w+")
    main = subprocess.Popen(
        [*sweep_cmd, "--out", str(out), "--space", str(space), *FORECAST_SMALL[:2], "--epochs", "100000"]
        + ["--backend", "numpy"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workers: list[int] = []
    try:

        def both_training():
            if main.poll() is not None:
                log.seek(0)
                raise AssertionError(f"the sweep exited early ({main.returncode}): {log.read()[-2000:]}")
            return all((out / f"trial_000{n}" / "metrics.jsonl").exists() for n in (0, 1))

        _wait_for(both_training, 120, "both workers to start training")
        workers[:] = _sweep_workers(main.pid)
        assert len(workers) == 2
        if signum == signal.SIGTERM:  # first a terminal's Ctrl-Z and `fg`: the workers pause and go on
            main.send_signal(signal.SIGTSTP)
            _wait_for(lambda: all(_state(pid) == "T" for pid in [main.pid, *workers]), 30, "all to stop")
            main.send_signal(signal.SIGCONT)
            _wait_for(lambda: not any(_state(pid) == "T" for pid in [main.pid, *workers]), 30, "all to go on")
        main.send_signal(signum)
        main.wait(timeout=90)
        _wait_for(lambda: not any(_alive(pid) for pid in workers), 90, "the workers to exit")
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
        for pid in workers:  # none should be left; if the test failed, leave none behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    log.seek(0)
    trials = load(f"sqlite:///{out / 'study.db'}", "forecast-sweep").get_trials()
    statuses, text = [(t.state.name, t.user_attrs.get("status")) for t in trials], log.read()
    assert statuses == [("FAIL", "interrupted")] * 2, (statuses, text[-3000:])
    assert "Traceback" not in text and text.count("interrupted; the trial under way") == 2, text[-3000:]
    if signum == signal.SIGTERM:
        assert main.returncode == 0 and "study forecast-sweep: 0 complete" in text, text[-2000:]  # and its summary


def test_a_preset_is_every_trials_base_and_flags_beside_it_win(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 120, encoding="utf-8")
    space = space_file(tmp_path, "[lr]\nlow = 1e-3\nhigh = 2e-3\n")
    args = ["--text", text, "--hidden-size", "8", "--embed-size", "4", "--max-steps", "2", "--eval-every", "2"]
    code, _, _ = run_cli(
        capsys, "sweep", "charlm", "--preset", "fast-60s", *args, "--trials", "1", "--space", space,
        "--out", tmp_path / "sw", "--quiet",
    )  # fmt: skip
    assert code == 0
    config = (tmp_path / "sw" / "trial_0000" / "config.toml").read_text()
    assert "batch_size = 32" in config and "ema_decay = 0.99" in config and 'schedule = "cosine"' in config
    assert "hidden_size = 8" in config and "max_steps = 2" in config
    assert_user_error(capsys, "sweep", "forecast", "--preset", "fast-60s", match="unrecognized arguments")


def test_space_round_trip_and_bad_input(tmp_path, capsys):
    code, text, _ = run_cli(capsys, "sweep", "forecast", "--print-space")
    assert code == 0 and "[window]" in text
    assert sweep.load_space(space_file(tmp_path, text)) == TASKS["forecast"].sweep_space | {
        "window": {"low": 10, "high": 60, "log": False, "step": 5}
    }
    bad = [
        ("[lrr]\nlow = 1e-4\nhigh = 1e-2\n", "unknown key 'lrr'"),
        ("[lr\nlow = 1", "not valid TOML"),
        ("[lr]\nlow = 1e-2\nhigh = 1e-4\n", "low < high"),
        ('[cell]\nchoices = ["rnn", "transformer"]\n', "value 'transformer' is not valid"),
        ("[hidden_size]\nlow = 8.5\nhigh = 64\n", "integer field"),
        ("[lr]\nlow = 0.0\nhigh = 1e-2\nlog = true\n", "log = true needs low > 0"),
        ("[lr]\nmin = 1\n", "unknown key(s) min"),
    ]
    for content, message in bad:
        assert_user_error(
            capsys,
            "sweep",
            "forecast",
            "--trials",
            "1",
            "--space",
            space_file(tmp_path, content),
            "--out",
            tmp_path / "x",
            match=message,
        )
    assert_user_error(capsys, "sweep", "forecast", "--space", tmp_path / "none.toml", match="does not exist")
    assert_user_error(capsys, "sweep", "transformer", "--trials", "1", match="invalid choice")
    assert_user_error(
        capsys,
        "sweep",
        "forecast",
        "--trials",
        "1",
        "--out",
        tmp_path / "y",
        "--storage",
        "postgresql://nobody@127.0.0.1:1/none",
        match="cannot open sweep storage",
    )
    assert_user_error(
        capsys,
        "sweep",
        "forecast",
        "--trials",
        "1",
        "--out",
        tmp_path / "y",
        "--storage",
        "notadb://x",
        match="cannot open sweep storage",
    )
    assert_user_error(
        capsys,
        "sweep",
        "charlm",
        "--trials",
        "1",
        "--max-steps",
        "0",
        "--max-minutes",
        "0",
        "--target-loss",
        "1",
        "--out",
        tmp_path / "z",
        match="budget per trial",
    )
    assert_user_error(capsys, "sweep", "forecast", "--trials", "0", match="expected an integer >= 1")


def test_a_study_made_for_another_space_is_refused(tmp_path, capsys):
    out = tmp_path / "sw"
    one = space_file(tmp_path, "[lr]\nchoices = [0.003]\n")
    assert run_cli(capsys, "sweep", "forecast", "--trials", "1", "--space", one, "--out", out, *FORECAST_SMALL)[0] == 0
    other = tmp_path / "other.toml"
    other.write_text("[lr]\nchoices = [0.01]\n", encoding="utf-8")
    assert_user_error(
        capsys,
        "sweep",
        "forecast",
        "--trials",
        "1",
        "--space",
        other,
        "--out",
        out,
        *FORECAST_SMALL,
        match="another search space",
    )


# --------------------------------------------------------------------------- PostgreSQL


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster on a local port (initdb + pg_ctl in a temp dir), or a skip."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    prefix = []
    root = tempfile.mkdtemp(prefix="rnnlab-pg-")
    if os.geteuid() == 0:  # the server refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        try:
            import pwd

            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to start the server as")
        os.chmod(root, 0o755)
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", data, "-U", "rnnlab", "--auth=trust", "-E", "UTF8", "--no-locale"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            data,
            "-l",
            os.path.join(root, "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="rnnlab", dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE sweeps")
        yield f"postgresql://rnnlab@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_sweep_on_a_real_postgresql_server(postgres_url, tmp_path, capsys):
    out = tmp_path / "pg"
    code, stdout, err = run_cli(
        capsys,
        "sweep",
        "forecast",
        "--trials",
        "4",
        "--workers",
        "2",
        "--storage",
        postgres_url,
        "--study",
        "shared",
        "--out",
        out,
        *FORECAST_SMALL,
    )
    assert code == 0, err
    assert "storage postgresql://rnnlab@127.0.0.1" in stdout
    assert_complete_study(load(postgres_url, "shared"), 4, out)
    assert not (out / "study.db").exists()
