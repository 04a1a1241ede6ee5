"""kubernetes/rayjob.yaml is a RayJob that KubeRay v1.7.0's CRD accepts (its OpenAPI v3
schema, ../shared/schemas/kuberay-v1.7.0) and that runs the study the way the documentation says."""

import functools
import os

import jsonschema
import pytest
import yaml

from tests import study_json
from tests.conftest import ROOT

SCHEMAS = os.path.join(ROOT, "..", "shared", "schemas", "kuberay-v1.7.0")


def manifest(name):
    with open(os.path.join(ROOT, "kubernetes", name)) as f:
        return list(yaml.safe_load_all(f))


@functools.cache
def crd_schema(kind_file: str, version: str = "v1") -> dict:
    if not os.path.isdir(SCHEMAS):
        pytest.skip(f"KubeRay schemas not found at {SCHEMAS}")
    with open(os.path.join(SCHEMAS, kind_file)) as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 10,000 lines: libyaml's speed
    return next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)


def test_the_rayjob_matches_kuberays_crd_schema():
    (job,) = manifest("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    jsonschema.validate(job, crd_schema("ray.io_rayjobs.yaml"))


def test_a_misspelt_field_would_be_caught():
    (job,) = manifest("rayjob.yaml")
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, crd_schema("ray.io_rayjobs.yaml"))


def test_the_job_runs_the_paper_grid_on_autoscaled_gpu_workers_with_a_token():
    (job,) = manifest("rayjob.yaml")
    spec = job["spec"]
    assert "python -m study.run --grid paper" in spec["entrypoint"] and "--gpus-per-trial 0.25" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token" and cluster["rayVersion"] == "2.60.0"
    (gpu,) = cluster["workerGroupSpecs"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and gpu["minReplicas"] == 0 and cluster["enableInTreeAutoscaling"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in gpu["template"]["spec"]["volumes"]}
    volumes = {claim["metadata"]["name"]: claim["spec"]["accessModes"] for claim in manifest("volumes.yaml")}
    assert claims == set(volumes) and all(modes == ["ReadWriteMany"] for modes in volumes.values())
    assert "--storage /results" in spec["entrypoint"] and "--cache-dir /results/cache" in spec["entrypoint"]


def test_a_retried_job_resumes_the_study_its_failed_attempt_started(tmp_path, capsys):
    """The entrypoint's --resume-existing: a fresh name starts, an existing study is resumed
    with the job's own options (any that differ from the recorded ones are refused)."""
    import shlex

    from study.cli.options import existing_study, given_options, study_spec
    from study.spec import StudySpec

    (job,) = manifest("rayjob.yaml")
    assert job["spec"]["backoffLimit"] >= 1
    argv = shlex.split(job["spec"]["entrypoint"])[3:]
    argv[argv.index("--storage") + 1] = str(tmp_path)
    args = StudySpec.from_options(given_options(argv))
    assert args.resume_existing and existing_study(args) is None  # the first attempt starts the study
    study = tmp_path / "paper"
    study.mkdir()
    study_json.write(study, args.record())
    assert existing_study(args) == str(study) and "exists: resuming it" in capsys.readouterr().out
    resumed = study_spec(given_options(argv))
    assert resumed.resume == str(study) and resumed.grid == "paper" and resumed.gpus_per_trial == 0.25


@pytest.mark.extra("serve")
def test_the_rayservice_matches_kuberays_crd_and_serves_the_study_with_a_token(tmp_path):
    """kubernetes/rayservice.yaml: valid for KubeRay v1.7.0's RayService CRD, token-protected,
    and its serveConfigV2 a Serve config Ray accepts whose application study.serve builds."""
    (service,) = manifest("rayservice.yaml")
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    jsonschema.validate(service, crd_schema("ray.io_rayservices.yaml"))
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token" and cluster["rayVersion"] == "2.60.0"
    broken = {**service, "spec": {**service["spec"], "serveConfigV2": {"applications": []}}}  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema("ray.io_rayservices.yaml"))
    from ray.serve import schema as serve_schema

    config = serve_schema.ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == "study.serve:build" and [d.name for d in app.deployments] == ["AgeGroups"]
    from study.serve import build
    from trainable.model import random_model_file

    assert app.args["model"].startswith("/results/")
    model = random_model_file(tmp_path / "model.pt")
    assert build({**app.args, "model": model}) is not None  # the builder takes the manifest's args
