"""The fitboard command line, run as a user runs it: a real process, real training, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.helpers import tiny_recipe


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
