"""``./cems`` installs the extras the command needs (its ``extras_for`` function, run by bash on its own)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parents[2] / "cems"


def extras_for(*args: str) -> list[str]:
    script = f'source <(sed -n "/^extras_for()/,/^}}/p" "{LAUNCHER}"); extras_for "$@"'
    out = subprocess.run(["bash", "-c", script, "cems", *args], capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.mark.parametrize(("args", "extras"), [
    (["edge", "simulate", "--seconds", "5"], ["edge", "opcua"]),
    (["edge", "check", "gw.yaml"], ["edge", "opcua"]),
    (["demo", "--no-serve"], ["central", "console"]),
    (["console", "serve"], ["central", "console"]),
    (["hj212", "serve", "x.yaml"], ["central", "sm4"]),
    (["stream", "worker", "w.yaml"], ["central"]),
    (["archive", "export", "--format", "parquet"], ["central", "parquet"]),
    (["archive", "export", "--format=parquet"], ["central", "parquet"]),
    (["archive", "export", "--format", "csv"], ["central"]),
    (["site", "check", "s.yaml"], []),
    (["schema", "show", "gateway"], []),
    (["--help"], []),
    ([], []),
])
def test_each_command_gets_its_extras(args, extras):
    assert extras_for(*args) == extras


def test_the_launcher_is_valid_bash():
    subprocess.run(["bash", "-n", str(LAUNCHER)], check=True)
