"""cluster.yaml, checked offline the way `ray up` checks it, plus the intent behind it.

`ray up` (ray.autoscaler._private.commands.create_or_update_cluster -> _bootstrap_config) runs
prepare_config (fillout_defaults with the AWS defaults, merge_setup_commands, validate_docker_config,
fill_node_type_min_max_workers) and validate_config (ray-schema.json + cross-field rules) before
anything contacts AWS; the provider's bootstrap_config (boto3) comes after and is left out here.
No AWS credentials, no network, no Ray cluster.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Dict

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import check_legacy_fields, prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
MOUNT = "~/parity_ray"


def load() -> Dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_up_offline(config: Dict[str, Any]) -> Dict[str, Any]:
    """What `ray up` does to the file before its first AWS call."""
    config = copy.deepcopy(config)
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))  # fail early, on the file as written
    prepared = prepare_config(config)
    check_legacy_fields(prepared)
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def raw() -> Dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def prepared(raw) -> Dict[str, Any]:
    return ray_up_offline(raw)


def workers(config: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


# --------------------------------------------------------------------------- Ray's own checks


def test_matches_rays_schema(raw):
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(raw)]
    assert errors == []


def test_passes_rays_config_preparation(prepared, raw):
    assert prepared["cluster_name"] == "parity-ray"
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # Our node types replace the AWS defaults instead of being merged with them.
    assert set(prepared["available_node_types"]) == set(raw["available_node_types"])


def rename(key: str, new: str, *path: str):
    def apply(config):
        for part in path:
            config = config[part]
        config[new] = config.pop(key)
    return apply


@pytest.mark.parametrize(
    "bad, misspell",
    [
        ("setup_comands", rename("setup_commands", "setup_comands")),
        ("max_worker", rename("max_workers", "max_worker")),
        ("min_worker", rename("min_workers", "min_worker", "available_node_types", "gpu-spot")),
        ("resource", rename("resources", "resource", "available_node_types", "head")),
        ("ssh_usr", rename("ssh_user", "ssh_usr", "auth")),
    ],
    ids=["top:setup_comands", "top:max_worker", "node-type:min_worker", "node-type:resource", "auth:ssh_usr"],
)
def test_a_misspelled_key_fails_validation(bad, misspell):
    config = load()
    misspell(config)
    with pytest.raises(jsonschema.ValidationError) as caught:
        ray_up_offline(config)
    assert f"'{bad}'" in str(caught.value)
    # Ray's own validate_config catches it too, after prepare_config (not only our early schema call).
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


def test_min_workers_above_the_global_max_fails():
    config = load()
    config["available_node_types"]["gpu-spot"]["min_workers"] = config["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        ray_up_offline(config)


def test_node_configs_are_ec2_run_instances_parameters(raw):
    """node_config goes to EC2 RunInstances as is; Ray's schema leaves it open, botocore's bundled model does not."""
    botocore_session = pytest.importorskip("botocore.session")
    members = botocore_session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape.members
    for name, node_type in raw["available_node_types"].items():
        unknown = set(node_type["node_config"]) - set(members)
        assert not unknown, f"{name}: not RunInstances parameters: {sorted(unknown)}"


# --------------------------------------------------------------------------- our intent


def test_the_head_runs_no_trials(prepared):
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert head["resources"].get("GPU", 0) == 0
    assert head["max_workers"] == 0


def test_workers_have_gpus_and_sane_bounds(raw, prepared):
    assert workers(raw), "no worker node types"
    for name, node_type in workers(raw).items():
        assert node_type["resources"].get("GPU", 0) >= 1, name
        assert node_type["resources"].get("CPU", 0) >= 1, name
        assert "min_workers" in node_type and "max_workers" in node_type, name  # explicit bounds
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= raw["max_workers"], name
    markets = {name: t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") for name, t in workers(raw).items()}
    assert "spot" in markets.values() and None in markets.values(), markets  # spot and on-demand types
    for name, node_type in prepared["available_node_types"].items():
        assert "Arn" in node_type["node_config"].get("IamInstanceProfile", {}), f"{name}: no instance profile (S3)"


def test_setup_installs_this_project_from_the_mount(raw, prepared):
    mounted = raw["file_mounts"][MOUNT]
    assert (REPO / mounted / "setup.py").is_file()  # `ray up` from the repo root syncs the repo
    for key in ("head_setup_commands", "worker_setup_commands"):  # merged by prepare_config
        commands = prepared[key]
        assert any(re.search(rf"pip install -e {re.escape(MOUNT)}(\s|$)", c) for c in commands), key
    # Pins live in setup.py only: no command installs the torch stack or Ray on its own.
    every = [c for key in ("setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands")
             for c in raw.get(key) or []]
    for command in every:
        assert not re.search(r"pip install[^;&|]*\b(torch|torchvision|torchaudio|ray)\b", command), command


def test_start_commands_are_the_standard_ones(raw):
    head = " ".join(raw["head_start_ray_commands"])
    assert "ray start --head --port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in " ".join(raw["worker_start_ray_commands"])


def test_the_s3_storage_is_named_once(prepared):
    lines = CLUSTER_YAML.read_text().splitlines()
    # Comments may talk about S3; the values name it once.
    code = ["" if line.lstrip().startswith("#") else line.split(" #")[0] for line in lines]
    places = [n for n, line in enumerate(code) if "s3://" in line]
    assert len(places) == 1, [lines[n] for n in places]
    assert re.search(r"PARITY_RAY_STORAGE=s3://[\w.-]+/\S+", code[places[0]]), lines[places[0]]
    assert "change this line" in lines[places[0]]
    # It reaches both the head and the workers.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any("PARITY_RAY_STORAGE=s3://" in c for c in prepared[key]), key


# --------------------------------------------------------------------------- what the head exposes

def test_the_cluster_opens_no_port_but_ssh_to_the_outside(raw, prepared):
    """The inbound rules `ray up` gives the cluster's security group, computed by Ray's own AWS code
    from the file: the cluster's nodes reach each other; the outside reaches SSH only."""
    from ray.autoscaler._private.aws.config import _create_default_inbound_rules

    # A security group the file names would bring rules this file cannot show: there is none.
    for name, node_type in prepared["available_node_types"].items():
        assert not node_type["node_config"].get("SecurityGroupIds"), name
    extra = raw["provider"].get("security_group", {}).get("IpPermissions", [])
    rules = _create_default_inbound_rules(["sg-cluster"], extra)
    outside = [r for r in rules if r.get("IpRanges") or r.get("Ipv6Ranges") or r.get("PrefixListIds")]
    assert outside, "Ray's defaults always let SSH in: the rules were not computed"
    for rule in outside:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
    for rule in rules:
        if rule not in outside:  # everything else comes from the cluster's own group only
            assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == ["sg-cluster"], rule


def test_the_dashboard_and_job_server_listen_on_the_heads_loopback(raw):
    """The job server is the dashboard's: bound to 127.0.0.1 it takes no job from the network, and
    `ray dashboard cluster.yaml` (the README's way in) forwards it over SSH."""
    head = " ".join(raw["head_start_ray_commands"])
    hosts = re.findall(r"--dashboard-host[= ](\S+)", head)
    assert hosts == ["127.0.0.1"], hosts
    for command in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]:
        assert "0.0.0.0" not in command and "--ray-client-server-port" not in command, command
    assert "ray dashboard cluster.yaml" in (REPO / "README.md").read_text()
