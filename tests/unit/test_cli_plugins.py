"""``cems`` finds ``cems edge`` and the gateway schema through entry points; a plugin that fails to import is
skipped and its command says what to install."""

from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint

import click
from click.testing import CliRunner

from streams.cli import main, plugins
from streams.cli.plugins import COMMANDS, SCHEMAS, load_commands, plugin_schemas


def test_edge_and_the_gateway_schema_come_from_the_entry_points():
    res = CliRunner().invoke(main, ["edge", "--help"])
    assert res.exit_code == 0, res.output
    assert "check" in res.output and "simulate" in res.output
    res = CliRunner().invoke(main, ["schema", "show", "gateway"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["title"] == "CEMS gateway (agent, Kafka, site, devices and points)"
    assert {"agent", "kafka", "site", "devices"} <= doc["properties"].keys()


def test_the_central_cli_does_not_import_edge_agent():
    """``streams/cli`` reaches the gateway's code only through the entry points, never by an import statement; the
    demo's module alone builds its plants with the gateway's simulator (the import contract's one exception)."""
    import ast
    from pathlib import Path

    imported = set()
    for path in Path(plugins.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {(path.name, a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
    gateway = [(f, m) for f, m in imported if m.split(".")[0] == "edge_agent"]
    assert gateway == [("demo.py", "edge_agent.simulator.demo")]


def _group_with(monkeypatch, eps: list[EntryPoint]) -> click.Group:
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep for ep in eps if ep.group == group])

    @click.group()
    def cems() -> None: ...

    load_commands(cems)
    return cems


def test_a_plugin_that_fails_to_import_is_skipped_with_what_to_install(monkeypatch, tmp_path):
    (tmp_path / "plugin_needs_opcua.py").write_text(
        "from schemas._optional import require\nrequire('no_such_module_for_cems_tests', extra='opcua')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = _group_with(monkeypatch, [
        EntryPoint("ua", "plugin_needs_opcua:cmd", COMMANDS),
        EntryPoint("gone", "no_such_package_for_cems_tests.cli:cmd", COMMANDS),
        EntryPoint("good", "streams.cli:schema", COMMANDS),
    ])
    assert sorted(group.commands) == ["gone", "good", "ua"]  # the failures stay listed
    runner = CliRunner()
    assert runner.invoke(group, ["good", "--help"]).exit_code == 0  # the others still work
    res = runner.invoke(group, ["ua", "check", "gw.yaml", "--any-option"])
    assert res.exit_code == 1
    assert "cems ua is not available: plugin_needs_opcua:cmd failed to import" in res.output
    assert "needs the 'opcua' extra" in res.output and "pip install 'cems-pipeline[opcua]'" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(group, ["gone"])
    assert res.exit_code == 1 and "ModuleNotFoundError" in res.output and "pip install 'cems-pipeline'" in res.output
    assert "not available" in runner.invoke(group, ["--help"]).output


def test_the_edge_plugin_without_its_code_names_the_edge_extra(monkeypatch):
    """The real entry point, its module made unimportable: ``cems edge`` names the distribution's ``edge`` extra."""
    monkeypatch.setitem(sys.modules, "edge_agent.cli", None)  # import edge_agent.cli now raises ImportError

    @click.group()
    def cems() -> None: ...

    load_commands(cems)
    res = CliRunner().invoke(cems, ["edge", "check", "gateway.yaml"])
    assert res.exit_code == 1 and "pip install 'cems-pipeline[edge]'" in res.output, res.output


def test_a_plugin_that_is_no_command_is_refused(monkeypatch):
    group = _group_with(monkeypatch, [EntryPoint("odd", "json:dumps", COMMANDS)])
    res = CliRunner().invoke(group, ["odd"])
    assert res.exit_code == 1 and "json:dumps is a function, not a click command" in res.output


def test_a_failing_schema_plugin_is_left_out_and_said(monkeypatch, capsys):
    eps = [EntryPoint("gateway", "edge_agent.config:gateway_json_schema", SCHEMAS),
           EntryPoint("broken", "no_such_package_for_cems_tests:schema", SCHEMAS)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep for ep in eps if ep.group == group])
    schemas = plugin_schemas()
    assert list(schemas) == ["gateway"]
    assert "schema 'broken' is not available" in capsys.readouterr().err


def test_the_installed_distribution_declares_the_entry_points():
    """pyproject.toml's entry points, as installed (a stale install, before they existed, fails here first)."""
    from importlib.metadata import entry_points

    assert [ep.value for ep in entry_points(group=COMMANDS) if ep.name == "edge"] == ["edge_agent.cli:edge"]
    assert [ep.value for ep in entry_points(group=SCHEMAS)] == ["edge_agent.config:gateway_json_schema"]
