"""The deployable images, the compose install and the Kubernetes manifests, checked without building or running
anything (deploy/images/smoke.sh builds and runs the images; it is opt-in, CI time being limited).

What is checked: every file parses; every command an image, a container or a service runs is a real ``cems``
command whose options parse; secrets are referenced (Secrets, the host's environment), never written in a file;
the central settings the manifests and the compose file ship load as the roles load them, with the secrets from
the environment; every server has probes and every container resource limits; the edge image's dependency set
has neither faust nor the InfluxDB client.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from ingest.hj212_server import Hj212ServerConfig
from schemas.configfile import load_settings
from streams.cli import main
from streams.config import WorkerConfig

REPO = Path(__file__).resolve().parents[2]
IMAGES, COMPOSE, K8S = REPO / "deploy" / "images", REPO / "deploy" / "compose", REPO / "deploy" / "k8s"
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")
#: Environment variables that carry a secret (the settings' SecretStr fields and the compose file's own).
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$", re.IGNORECASE)
#: Keys of a settings file that would hold a secret if written there.
SECRET_KEYS = {"sasl_password", "token", "intake_token", "password"}


def _k8s_docs() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def _pod_spec(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def _containers(doc: dict) -> list[dict]:
    pod = _pod_spec(doc)
    return pod.get("initContainers", []) + pod["containers"]


def _compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text(encoding="utf-8"))


def _cems_argv(command: list[str] | None, entrypoint: list[str] | None, default_entrypoint: list[str]) -> list[str]:
    """The ``cems`` argument vector a container runs: ENTRYPOINT + CMD, or the cems line inside ``bash -c``."""
    argv = list(entrypoint if entrypoint is not None else default_entrypoint) + list(command or [])
    if argv[:2] == ["/bin/bash", "-c"]:
        script = " ".join(argv[2:])
        line = next(part for part in re.split(r";|&&|\bdo\b", script) if part.strip().startswith("cems "))
        argv = shlex.split(line)
    assert argv[0] == "cems", f"{argv}: not a cems command"
    return argv[1:]


def _parses(args: list[str]) -> None:
    """``cems ARGS`` resolves to a command whose options and arguments parse (nothing is run)."""
    ctx = click.Context(main, info_name="cems")
    cmd: click.Command = main
    rest = list(args)
    while isinstance(cmd, click.Group):
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"cems {' '.join(args)}: no command {name!r}"
        ctx = click.Context(sub, info_name=name, parent=ctx)
        cmd = sub
    assert "not available" not in (cmd.help or ""), f"cems {' '.join(args)}: {cmd.help}"
    cmd.make_context(ctx.info_name, rest, parent=ctx.parent)


def _containerfile(name: str) -> dict[str, list[str]]:
    """The JSON-form ENTRYPOINT and CMD of a Containerfile, and its EXTRAS default."""
    text = (IMAGES / f"{name}.Containerfile").read_text(encoding="utf-8")
    out = {}
    for key in ("ENTRYPOINT", "CMD"):
        m = re.search(rf"^{key} (\[.*\])$", text, re.MULTILINE)
        assert m, f"{name}.Containerfile: no JSON-form {key}"
        out[key] = yaml.safe_load(m.group(1))
    m = re.search(r"^ARG EXTRAS=(\S+)$", text, re.MULTILINE)
    assert m, f"{name}.Containerfile: no ARG EXTRAS default"
    out["EXTRAS"] = m.group(1).split(",")
    return out


# --- the images --------------------------------------------------------------------------------------------------


def test_image_entrypoints_name_existing_commands():
    edge, central = _containerfile("edge"), _containerfile("central")
    assert edge["ENTRYPOINT"] == ["cems", "edge"]
    _parses(edge["ENTRYPOINT"][1:] + edge["CMD"])
    _parses(edge["ENTRYPOINT"][1:] + ["simulate", "--seconds", "5", "--opcua-port", "0"])
    assert central["ENTRYPOINT"] == ["cems"]
    report = sorted((REPO / "deploy/demo/reports").glob("*.csv"))[0]  # --reports takes files, not a folder
    _parses(["demo", "--no-serve", "--out", "/tmp/demo", "--reports", str(report)])


def _extra_requirements(extra: str, seen: set[str] | None = None) -> set[str]:
    """The distribution names an extra of pyproject.toml brings in directly, self-references expanded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    seen = seen if seen is not None else set()
    names = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in project["dependencies"]}
    for req in project["optional-dependencies"][extra]:
        m = re.fullmatch(r"cems-pipeline\[(.+)\]", req)
        if m:
            for sub in m.group(1).split(","):
                if sub not in seen:
                    seen.add(sub)
                    names |= _extra_requirements(sub, seen)
        else:
            names.add(re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower())
    return names


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need, transitively, as installed here (markers evaluated, no extras)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo, seen = [canonicalize_name(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # a requirement for another platform or Python
        for r in map(Requirement, requires):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(r.name))
    return seen


def test_edge_image_has_no_faust_no_influxdb_client():
    edge = _containerfile("edge")
    build = (IMAGES / "build.sh").read_text(encoding="utf-8")
    assert re.search(r'edge_extras="\$\{CEMS_EDGE_EXTRAS:-edge\}"', build), "build.sh: the edge default is not [edge]"
    deps = set().union(*(_extra_requirements(x) for x in edge["EXTRAS"]))
    assert {"pymodbus", "kafka-python"} <= deps
    central_only = {"faust-streaming", "influxdb-client", "aiokafka", "aiohttp", "pyarrow"}
    assert not deps & central_only, deps
    # ... nor anything they pull in (the smoke test also finds none of them importable in the built image).
    assert not _closure(deps) & central_only, sorted(_closure(deps))
    # The central image's extras carry the central roles.
    central = set().union(*(_extra_requirements(x) for x in _containerfile("central")["EXTRAS"]))
    assert {"faust-streaming", "influxdb-client", "argon2-cffi"} <= central


def test_build_runs_without_network():
    build = (IMAGES / "build.sh").read_text(encoding="utf-8")
    assert "--network=none" in build and "--pull=never" in build
    for name in ("edge", "central"):
        text = (IMAGES / f"{name}.Containerfile").read_text(encoding="utf-8")
        assert "--no-index" in text, f"{name}.Containerfile installs from somewhere else than the staged wheels"
        assert re.search(r"^USER 10001", text, re.MULTILINE), f"{name}.Containerfile runs as root"


# --- Kubernetes ------------------------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == on_disk


def test_k8s_commands_exist_and_parse():
    workloads = [d for d in _k8s_docs() if d["kind"] in WORKLOADS]
    assert {d["metadata"]["name"] for d in workloads} >= {"cems-worker", "cems-reconciler", "cems-hj212",
                                                          "cems-archive", "cems-accounting", "cems-topics"}
    for doc in workloads:
        for c in _containers(doc):
            assert c["image"].startswith("localhost/cems-central"), c["image"]
            _parses(_cems_argv(c.get("args"), c.get("command"), ["cems"]))


def test_k8s_secrets_are_referenced_not_embedded():
    docs = _k8s_docs()
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret with its data in the repository"
    referenced = set()
    for doc in (d for d in docs if d["kind"] in WORKLOADS):
        for c in _containers(doc):
            for env in c.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, f"{doc['metadata']['name']}/{c['name']}: {env['name']} written out"
                    referenced.add(env["valueFrom"]["secretKeyRef"]["name"])
        for vol in _pod_spec(doc).get("volumes", []):
            if "secret" in vol:
                referenced.add(vol["secret"]["secretName"])
    assert referenced >= {"cems-central", "cems-agent-keys", "cems-hj212-passwords", "cems-kafka-ca"}
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cems-config")
    for name, text in config["data"].items():
        assert not _secret_keys(yaml.safe_load(text)), f"cems-config/{name} holds a secret"


def _secret_keys(tree, path="") -> list[str]:
    if isinstance(tree, dict):
        return [k for key, v in tree.items() for k in
                ([f"{path}{key}"] if key in SECRET_KEYS and v else _secret_keys(v, f"{path}{key}."))]
    return []


def _env_of(container: dict) -> dict[str, str]:
    """The container's environment with each secret replaced by a stand-in (what the kubelet would inject)."""
    env = container.get("env", [])
    return {e["name"]: e.get("value", f"from-{e['valueFrom']['secretKeyRef']['key']}") for e in env}


def test_k8s_settings_load_with_the_secrets_from_the_environment(tmp_path, monkeypatch):
    docs = _k8s_docs()
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cems-config")
    for key in config["data"]:
        (tmp_path / key).write_text(config["data"][key], encoding="utf-8")
    worker = next(d for d in docs if d["metadata"]["name"] == "cems-worker" and d["kind"] == "Deployment")
    for name, value in _env_of(_pod_spec(worker)["containers"][0]).items():
        monkeypatch.setenv(name, value)
    cfg = load_settings(tmp_path / "worker.yaml", WorkerConfig)
    assert cfg.kafka.sasl_password.get_secret_value() == "from-kafka-sasl-password"
    assert cfg.influx is not None and cfg.influx.token.get_secret_value() == "from-influx-token"
    hj212 = next(d for d in docs if d["metadata"]["name"] == "cems-hj212" and d["kind"] == "StatefulSet")
    for name, value in _env_of(_pod_spec(hj212)["containers"][0]).items():
        monkeypatch.setenv(name, value)
    hcfg = load_settings(tmp_path / "hj212-server.yaml", Hj212ServerConfig)
    assert hcfg.kafka.sasl_password.get_secret_value() == "from-kafka-sasl-password"
    assert hcfg.metrics_address == "0.0.0.0"  # else the probe and Prometheus cannot reach it


def test_k8s_probes_limits_and_scalable_workers():
    docs = _k8s_docs()
    for doc in (d for d in docs if d["kind"] in WORKLOADS):
        pod = _pod_spec(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in _containers(doc):
            where = f"{doc['metadata']['name']}/{c['name']}"
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), f"{where}: no limits"
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), f"{where}: no requests"
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            if c.get("ports"):
                assert "readinessProbe" in c and "livenessProbe" in c, f"{where} listens but has no probes"
                names = {p["name"] for p in c["ports"]}
                for probe in (c["readinessProbe"], c["livenessProbe"]):
                    action = probe.get("httpGet") or probe.get("tcpSocket")
                    assert action["port"] in names, f"{where}: a probe on an undeclared port"
    worker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cems-worker")
    assert worker["spec"]["replicas"] >= 2
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cems-worker"
    topics = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "cems-topics")
    args = _containers(topics)[0]["args"]
    # a 13th worker would hold no partition
    assert hpa["spec"]["maxReplicas"] <= int(args[args.index("--partitions") + 1])


# --- compose ---------------------------------------------------------------------------------------------------------


def test_compose_commands_exist_and_parse():
    services = _compose()["services"]
    ours = {n: s for n, s in services.items() if "cems-" in s.get("image", "")}
    assert set(ours) >= {"topics", "worker", "reconciler", "accounting", "hj212", "archive-sync", "console", "edge"}
    for name, svc in ours.items():
        default = ["cems", "edge"] if "cems-edge" in svc["image"] else ["cems"]
        argv = _cems_argv(svc.get("command"), svc.get("entrypoint"), default)
        _parses(argv)
        config = next((a for a in argv if a.startswith("/etc/cems/") and a.endswith(".yaml")), None)
        if config and name != "edge":
            mounted = [re.sub(r":(ro|rw)$", "", v).rsplit(":", 1)[1] for v in svc["volumes"]]
            assert config in mounted, f"compose {name}: {config} is not mounted"


def test_compose_secrets_come_from_the_environment(monkeypatch, tmp_path):
    services = _compose()["services"]
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"compose {name}: {key} is written out"
    for file, model, prefix in (("worker.yaml", WorkerConfig, "CEMS_STREAM__"),
                                ("hj212-server.yaml", Hj212ServerConfig, "CEMS_HJ212__")):
        tree = yaml.safe_load((COMPOSE / file).read_text(encoding="utf-8"))
        assert not _secret_keys(tree), f"deploy/compose/{file} holds a secret"
        monkeypatch.setenv(f"{prefix}INFLUX__TOKEN", "stand-in") if model is WorkerConfig else None
        load_settings(COMPOSE / file, model)


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "deploy" / "images").glob("*.sh")))
def test_scripts_are_strict_bash(path):
    text = (IMAGES / path).read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") or path == "lib.sh"
    if path != "lib.sh":
        assert "set -euo pipefail" in text


def test_deployments_name_the_version_build_sh_tags():
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert [i["newTag"] for i in kust["images"] if i["name"] == "localhost/cems-central"] == [version]
    for name, svc in _compose()["services"].items():
        m = re.fullmatch(r"\$\{CEMS_(?:CENTRAL|EDGE)_IMAGE:-localhost/cems-\w+:(.+)\}", svc["image"])
        assert m is None or m.group(1) == version, f"compose {name}: {svc['image']} is not version {version}"
