"""ray_config.yaml is a valid cluster-launcher config that keeps Ray's ports private."""

import json
import os

import jsonschema
import ray.autoscaler
import yaml

from tests.conftest import ROOT


def load():
    with open(os.path.join(ROOT, "ray_config.yaml")) as f:
        return yaml.safe_load(f)


def test_matches_rays_schema():
    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        schema = json.load(f)
    jsonschema.validate(load(), schema)


def test_head_and_gpu_worker_and_private_dashboard():
    config = load()
    assert set(config["available_node_types"]) == {"head", "gpu_worker"}
    assert config["head_node_type"] == "head"
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in open(os.path.join(ROOT, "ray_config.yaml")).read()
    assert any("pip install" in c and "face-age-study" in c for c in config["setup_commands"])


def test_every_node_starts_with_the_shared_token_in_the_image_behind_a_given_security_group():
    config = load()
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command and "RAY_AUTH_TOKEN_PATH=~/ray_auth_token" in command
    assert config["file_mounts"]["~/ray_auth_token"] == "./ray_auth_token"
    with open(os.path.join(ROOT, ".gitignore")) as f:
        assert "ray_auth_token" in f.read().split()  # generated once per cluster, never committed
    assert config["docker"]["image"].endswith("face-age-study:0.1.0")
    for node in config["available_node_types"].values():
        assert node["node_config"]["SecurityGroupIds"]  # else the launcher opens SSH to everyone


def test_every_cluster_command_the_docs_show_uses_the_token_and_a_private_token_file():
    import re

    with open(os.path.join(ROOT, "docs", "clusters.md")) as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), re.DOTALL)
    starts = [block for block in blocks if "ray start" in block]
    assert starts and all("RAY_AUTH_MODE=token" in block.split("ray start")[0] for block in starts)
    with open(os.path.join(ROOT, "docs", "clusters.md")) as f, open(os.path.join(ROOT, "ray_config.yaml")) as g:
        tokens = [line for line in f.read().splitlines() + g.read().splitlines() if "openssl rand" in line]
    assert tokens and all("umask 077" in line for line in tokens)
