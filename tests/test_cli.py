"""The fitboard command line, run as a user runs it: a real process, real training, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403


def fitboard(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the fitboard CLI in a fresh Python process."""
    return subprocess.run([sys.executable, "-m", "fitboard.worker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def write(tmp_path, recipe: dict, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_train_json_events(data_root, tmp_path):
    recipe = tiny_recipe(tta={"n": 1}, keep_best="accuracy")
    recipe["stages"][0]["epochs"] = 2
    proc = fitboard("train", write(tmp_path, recipe), "--data-root", str(data_root), "--json",
                    "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["stage"], e["epoch"]) for e in epochs] == [(0, 0), (0, 1)]
    assert set(epochs[0]) >= {"train_loss", "valid_loss", "metrics", "seconds"}
    assert set(epochs[0]["metrics"]) == {"accuracy", "error_rate"}
    last = events[-1]
    assert last["event"] == "result" and set(last["metrics"]) == {"valid_loss", "accuracy", "error_rate"}
    assert last["tta"]["n"] == 1 and last["best"]["stage"] == 0
    assert (tmp_path / "o" / "model.pkl").is_file()


def test_train_table_output(data_root, tmp_path):
    proc = fitboard("train", write(tmp_path, tiny_recipe()), "--data-root", str(data_root),
                    "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "train_loss" in line)
    assert header.split() == ["stage", "epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time"]
    assert "validation: loss" in proc.stdout


def test_invalid_recipe_exits_2_naming_the_field(data_root, tmp_path):
    recipe = tiny_recipe()
    recipe["stages"][0]["lr"] = [1e-2, 1e-4]
    proc = fitboard("train", write(tmp_path, recipe), "--data-root", str(data_root), "--json")
    assert proc.returncode == 2
    event = json.loads(proc.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["problems"][0]["loc"] == "stages[0].lr"


def test_invalid_dataset_exits_2_before_training(tmp_path):
    proc = fitboard("train", write(tmp_path, tiny_recipe(dataset="nowhere")), "--data-root", str(tmp_path), "--json")
    assert proc.returncode == 2 and "unknown dataset 'nowhere'" in proc.stdout


def test_failure_during_training_exits_1(data_root, tmp_path):
    proc = fitboard("train", write(tmp_path, tiny_recipe(pretrained=True)), "--data-root", str(data_root), "--json",
                    env={"TORCH_HOME": str(tmp_path / "no-weights")})
    assert proc.returncode == 1
    event = json.loads(proc.stdout.splitlines()[-1])
    assert event["event"] == "error" and "not in the local torch cache" in event["message"]


def test_demo_data_command(tmp_path):
    proc = fitboard("demo-data", str(tmp_path / "digits"), "--limit", "50")
    assert proc.returncode == 0 and (tmp_path / "digits" / "train.csv").read_text().count("\n") == 51


def test_train_finds_registered_datasets(data_root, tmp_path):
    from fitboard.app.store.db import make_engine, session_scope, upgrade
    from fitboard.app.store.registry import register_dataset

    url = f"sqlite:///{tmp_path / 'fitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as s:  # registered under another name, with a CSV that points at missing images
        (data_root / "digits" / "broken.csv").write_text("image_id,label,is_val\nnope.jpg,0,False\nnope2.jpg,1,True\n")
        register_dataset(s, "registered-digits", {"layout": "csv", "path": "digits", "csv": "broken.csv",
                                                  "images": "train_images"}, {})
    engine.dispose()
    recipe = write(tmp_path, tiny_recipe(dataset="registered-digits"))
    try:
        proc = fitboard("train", recipe, "--json",
                        env={"FITBOARD_HOME": str(tmp_path), "FITBOARD_DATA_ROOT": str(data_root)})
    finally:
        (data_root / "digits" / "broken.csv").unlink()  # the shared digits folder goes back to one CSV
    assert proc.returncode == 2 and "2 of 2 image files are missing" in proc.stdout  # found via the registry


def test_every_server_command_is_listed_with_the_extra_a_light_install_needs():
    """A light install lists the server's commands from a table (their modules cannot be imported there): the table
    names exactly the commands each group adds, and none of them is also a client command."""
    import argparse
    import importlib

    from fitboard.worker.cli import SERVER_GROUPS, client_commands

    for group, commands in SERVER_GROUPS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"fitboard.worker.cli.{group}").add_commands(sub)
        assert set(sub.choices) == set(commands), group
        assert set(commands.values()) <= {"server", "train"} and not set(commands) & client_commands()


def test_project_option_and_fitboard_project_choose_where_the_cli_and_the_client_list_and_launch(
        tmp_path, sqlite_url, data_root):
    """A served fitboard with two projects and mia a member of both: --project, FITBOARD_PROJECT and
    fitboard.Client(project=...) each say where runs, sweeps and searches land and which runs are listed."""
    from fitboard import Client
    from fitboard.app.core.settings import Settings
    from fitboard.app.services import people
    from fitboard.app.store.db import make_engine, session_scope
    from fitboard.errors import NotFound
    from tests.live import live_app

    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        people.add_person(s, "mia", "correct horse battery")
        for project in ("alpha", "beta"):
            people.add_project(s, project)
            people.grant(s, project, "mia", "member")
        token = people.create_token(s, people.person(s, "mia"))[0]
    engine.dispose()
    recipe = write(tmp_path, tiny_recipe(name="cli-run"))
    with live_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)) as (base, _):
        env = {"FITBOARD_API_TOKEN": token, "FITBOARD_URL": base, "FITBOARD_PROJECT": ""}
        to_beta = fitboard("submit", recipe, "--project", "beta", env=env, timeout=60)
        to_alpha = fitboard("submit", recipe, env={**env, "FITBOARD_PROJECT": "alpha"}, timeout=60)
        assert to_beta.returncode == 0 and to_alpha.returncode == 0, (to_beta.stderr, to_alpha.stderr)
        beta_run = int(to_beta.stdout.split()[1])
        listed = fitboard("runs", "--project", "beta", env=env, timeout=60)
        assert listed.returncode == 0 and [line.split()[0] for line in listed.stdout.splitlines()[1:-1]] == [
            str(beta_run)] and listed.stdout.splitlines()[-1] == "1 of 1 runs", listed.stdout
        nowhere = fitboard("runs", "--project", "gamma", env=env, timeout=60)
        assert nowhere.returncode == 1 and "project 'gamma' not found" in nowhere.stderr
        with Client(base, token, project="beta") as beta, Client(base, token, project="alpha") as alpha:
            assert beta.run(beta_run)["project"] == "beta" and alpha.run(beta_run)["project"] == "beta"  # by id
            assert [r["name"] for r in alpha.runs()] == ["cli-run"] and alpha.runs()[0]["project"] == "alpha"
            submitted = beta.submit(tiny_recipe(name="client-run"))
            assert (submitted["project"], submitted["launched_by"]) == ("beta", "mia")
            _, queued = beta.sweep(tiny_recipe(name="client-sweep"), {"stages[0].mixup": [0.2]}, seeds=(0, 1, 2),
                                   priority="low")
            assert {r["project"] for r in queued} == {"beta"} and len(queued) == 6
            assert {r["priority"] for r in queued} == {"low"}
            found = beta.search(tiny_recipe(name="client-search"), {"stages[0].bs": [16, 32]}, max_trials=2,
                                max_parallel=1, priority="high")
            trial = found["trials"][0]["run_id"]
            assert beta.run(trial)["project"] == "beta" and beta.run(trial)["priority"] == "high"
            space = tmp_path / "space.yaml"
            space.write_text("stages[0].bs: [16, 32]\n")
            by_cli = fitboard("search", recipe, "--space", str(space), "--trials", "1", "--parallel", "1",
                              "--priority", "low", "--project", "beta", env=env, timeout=60)
            assert by_cli.returncode == 0, by_cli.stderr
            cli_search = beta.search(int(by_cli.stdout.split()[1]))
            assert beta.run(cli_search["trials"][0]["run_id"])["priority"] == "low"
            assert {r["project"] for r in beta.runs()} == {"beta"} and len(beta.runs()) == 1 + 1 + 6 + 1 + 1
            with pytest.raises(NotFound):
                Client(base, token, project="gamma").runs()
    # on this host's database (no server named): the same option
    local = fitboard("runs", "--project", "beta", "--limit", "100",
                     env={"FITBOARD_DATABASE_URL": sqlite_url, "FITBOARD_URL": "", "FITBOARD_HOME": str(tmp_path)})
    assert local.returncode == 0 and local.stdout.splitlines()[-1] == "10 of 10 runs", local.stdout + local.stderr


HUGE_INT = "9" * 5000  # past Python's 4,300-digit limit on converting a string to an int


@pytest.mark.parametrize("name,text,message", [
    ("laughs.yaml", "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")) + "seed: *i\n",
     "aliases (*name) are not allowed"),
    ("deep.yaml", "seed: " + "[" * 50000 + "]" * 50000 + "\n", "nested too deeply"),
    ("huge.yaml", f"seed: [1, {HUGE_INT}]\n", "a number is out of range"),
])
def test_search_refuses_a_space_file_of_aliases_deep_nesting_or_huge_ints_in_one_line(tmp_path, name, text, message):
    """The space file went through yaml.safe_load: nine lines of *aliases hung the command (the client expanded them
    into 9**9 values), deep nesting and a 5,000-digit number ended in a traceback. Read as recipes are: exit 2."""
    space = tmp_path / name
    space.write_text(text)
    proc = fitboard("search", write(tmp_path, tiny_recipe()), "--space", str(space), "--trials", "2",
                    "--url", "http://127.0.0.1:9", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"refused: {space}: not valid YAML") and message in proc.stderr, proc.stderr


def test_a_recipe_with_a_5000_digit_number_is_refused_in_one_line(tmp_path):
    """`fitboard submit` and Client.submit(path) raised ValueError from PyYAML (or json) converting the number."""
    from fitboard import Client
    from fitboard.errors import RecipeFileError

    for name, text in (("r.yaml", f"name: x\nseed: {HUGE_INT}\n"), ("r.json", '{"name": "x", "seed": %s}' % HUGE_INT)):
        path = tmp_path / name
        path.write_text(text)
        proc = fitboard("submit", str(path), "--url", "http://127.0.0.1:9", timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.startswith(f"refused: {path}: cannot parse recipe: a number is out of range"), proc.stderr
        with pytest.raises(RecipeFileError, match="a number is out of range"):
            Client(url="http://127.0.0.1:9").submit(str(path))
