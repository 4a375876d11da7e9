"""The ``rpp-gym`` command line, through subprocesses, with tiny budgets."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest


def rpp(*args: str, input: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpp_gym", *args], capture_output=True, text=True, input=input, timeout=timeout
    )


def test_help_lists_every_command() -> None:
    out = rpp("--help").stdout
    for cmd in ("train", "evaluate", "compare", "play", "demo", "data", "cache", "bench"):
        assert cmd in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("train", "--env", "RPP-Nope-v0"), "doesn't exist"),
        (("train", "--algo", "sarsa"), "unknown --algo 'sarsa'"),
        (("evaluate", "nonsense-method"), "unknown method 'nonsense-method'"),
        (("evaluate", "random", "--llm", "gpt5"), "invalid LLM backend spec 'gpt5'"),
        (("data", "info", "movielens-2m"), "unknown dataset 'movielens-2m'"),
        (("train", "--algo", "ppo", "--out", "/proc/forbidden/run"), "cannot write to /proc/forbidden/run"),
        (("train", "--env", "RPP-Plus-MovieLens-Sim-v0", "--refine-steps", "100"), "freezes a global RPP+ bank"),
    ],
)
def test_user_errors_are_one_line_with_the_fix(args: tuple[str, ...], needle: str) -> None:
    res = rpp(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("rpp-gym: error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_incompatible_run_dir_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": 999, "algo": "rpp", "env_id": "RPP-MovieLens-Sim-v0"}))
    res = rpp("evaluate", str(run))
    assert res.returncode == 2 and "incompatible rpp-gym" in res.stderr and "Traceback" not in res.stderr


def test_train_resume_evaluate_and_compare_table_matches_json(tmp_path: Path) -> None:
    run = tmp_path / "ppo"
    res = rpp("train", "--algo", "ppo", "--steps", "240", "--num-envs", "4", "--out", str(run), "--quiet")
    assert res.returncode == 0, res.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "done" and config["trained_steps"] == 240 and config["algo"] == "ppo"
    assert (run / "model.zip").exists() and (run / "tb").is_dir()
    rows = list(csv.DictReader((run / "progress.csv").open()))
    assert rows and int(rows[-1]["steps"]) == 240

    # a second, longer call resumes from the checkpoint instead of starting over (also a run
    # directory written before --refine-steps existed)
    config.pop("refine_steps")
    (run / "config.json").write_text(json.dumps(config))
    res = rpp("train", "--algo", "ppo", "--steps", "480", "--num-envs", "4", "--out", str(run), "--quiet")
    assert res.returncode == 0 and "resuming" in res.stdout and "from 240 steps" in res.stdout
    assert json.loads((run / "config.json").read_text())["trained_steps"] == 480
    # a different run in the same folder is refused
    res = rpp("train", "--algo", "a2c", "--steps", "240", "--out", str(run), "--quiet")
    assert res.returncode == 2 and "holds a run with algo='ppo'" in res.stderr

    res = rpp("evaluate", str(run), "--users", "12")
    assert res.returncode == 0, res.stderr
    ev = json.loads((run / "eval-test.json").read_text())
    assert ev["users"] == 12 and 0 <= ev["ndcg@10"] <= 1 and len(ev["per_user_ndcg@10"]) == 12

    out = tmp_path / "cmp"
    res = rpp("compare", "--methods", "random,llmrank,popularity", "--runs", str(run), "--users", "12",
              "--out", str(out))
    assert res.returncode == 0, res.stderr
    table = (out / "comparison.md").read_text()
    records = json.loads((out / "comparison.json").read_text())
    by_method = {r["method"]: r for r in records}
    assert set(by_method) == {"random", "llmrank", "popularity", f"PPO ({run.name})"}
    for method, rec in by_method.items():
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {method} |"))
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")[1:]]
        assert [float(c) for c in cells] == [round(rec[k], 4) for k in ("ndcg@1", "ndcg@5", "ndcg@10")]
    # the run's own evaluation and the comparison saw the same users and candidates
    assert by_method[f"PPO ({run.name})"]["ndcg@10"] == pytest.approx(ev["ndcg@10"], abs=1e-6)
    for png in ("learning_curves.png", "sentence_choices.png"):
        assert (out / png).stat().st_size > 10_000


def test_rpp_plus_runs_train_evaluate_and_join_the_comparison(tmp_path: Path) -> None:
    plus = "RPP-Plus-MovieLens-Sim-v0"
    glob = tmp_path / "mappo-plus"
    res = rpp("train", "--env", plus, "--algo", "mappo", "--steps", "480", "--num-envs", "8", "--eval-every", "240",
              "--eval-users", "8", "--env-kwargs", '{"scope": "global", "every": 1, "min_trials": 1}',
              "--refine-steps", "240", "--out", str(glob), "--quiet")
    assert res.returncode == 0, res.stderr
    config = json.loads((glob / "config.json").read_text())
    assert config["bank_file"] == "bank.json" and (glob / "bank.json").is_file()
    assert config["env_kwargs"] == {"scope": "global", "every": 1, "min_trials": 1} and config["refine_steps"] == 240
    rows = list(csv.DictReader((glob / "progress.csv").open()))
    assert [r["eval_ndcg@10"] != "" for r in rows].count(True) == 2
    masked = tmp_path / "maskable"
    res = rpp("train", "--env", plus, "--algo", "maskable-ppo", "--steps", "240", "--num-envs", "4",
              "--out", str(masked), "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((masked / "config.json").read_text())["mask_start"] > 0

    # evaluated on the RPP+ env (an RPP+ policy would choose empty slots of the fixed banks and fail there)
    out = tmp_path / "cmp"
    res = rpp("compare", "--methods", "llmrank", "--runs", str(glob), str(masked), "--users", "12",
              "--out", str(out))
    assert res.returncode == 0, res.stderr
    records = {r["method"]: r for r in json.loads((out / "comparison.json").read_text())}
    assert set(records) == {"llmrank", "MAPPO+ (mappo-plus)", "MASKABLE-PPO+ (maskable)"}
    res = rpp("evaluate", str(glob), "--users", "12")
    assert res.returncode == 0, res.stderr
    ev = json.loads((glob / "eval-test.json").read_text())
    assert ev["ndcg@10"] == pytest.approx(records["MAPPO+ (mappo-plus)"]["ndcg@10"], abs=1e-6)
    # a damaged run (bank gone) is refused with the reason, not evaluated on an empty bank
    (glob / "bank.json").unlink()
    res = rpp("evaluate", str(glob), "--users", "12")
    assert res.returncode == 2 and "bank.json is missing" in res.stderr


def test_play_driven_by_scripted_input() -> None:
    res = rpp("play", "--seed", "3", input="1 0 3 0\nnot numbers\n2 1 1 4\nq\n")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.count("LLM answer:") == 2 and "is not four numbers" in out
    assert "reward NDCG@10 =" in out and "parsed ranking:" in out and out.rstrip().endswith("bye")


def test_data_info_prints_the_protocol() -> None:
    res = rpp("data", "info", "movielens-1m")
    assert res.returncode == 0, res.stderr
    assert "users 6,040" in res.stdout and "pool test : 200 users" in res.stdout and "leave-one-out" in res.stdout


def test_demo_trains_rpp_and_rpp_plus_and_compares_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the comparison itself is tested above; here, what the demo trains and hands to it
    from rpp_gym.cli import evaluate, main

    seen: dict = {}

    def fake_comparison(methods, groups, split, seed, out, quick=False, progress=True):  # type: ignore[no-untyped-def]
        seen.update(methods=methods, groups=groups)
        (out / "comparison.md").write_text("| table |\n")
        return {}

    monkeypatch.setattr(evaluate, "run_comparison", fake_comparison)
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "480", "--real-users", "2", "--out", str(out), "--quiet"]) == 0
    rpp_run, plus_run = json.loads((out / "rpp" / "config.json").read_text()), json.loads(
        (out / "rpp-plus" / "config.json").read_text()
    )
    assert rpp_run["env_id"] == "RPP-MovieLens-Sim-v0" and rpp_run["status"] == "done"
    assert plus_run["env_id"] == "RPP-Plus-MovieLens-Sim-v0" and plus_run["refine_steps"] == 96
    assert plus_run["bank_file"] == "bank.json" and (out / "rpp-plus" / "bank.json").is_file()
    assert seen["methods"][-2:] == [str(out / "rpp"), str(out / "rpp-plus")]
    assert seen["groups"][1][4][-2:] == [str(out / "rpp"), str(out / "rpp-plus")]  # the real-LLM column too


@pytest.mark.parametrize("module", ["rpp_gym.cli.report", "rpp_gym.evaluation"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
