"""Where trials run: Ray started or joined with its dashboard, and the check that some node,
live or addable by the autoscaler, can hold one trial (else Ray would wait forever)."""

from __future__ import annotations

import os
from typing import Any

import yaml

from study.spec import StudySpec
from study.terminal.quiet import filter_stderr, short_tracebacks
from trainable.errors import UserError

# Tune reuses a trial's worker for the next trial (study.tuning.tune_setup, reuse_actors) once the last
# trial's thread has ended; it waits TUNE_FUNCTION_THREAD_TIMEOUT_S for that (2 s by default),
# then fails the next trial, and Ray 2.60 may then leave a pending trial waiting forever. A
# stopped trial's thread still unwinds and frees its memory (trainable.tune_trial): on a busy
# node that takes more than 2 s. Set on every worker of the study, whatever the driver's value.
WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "60"}


def start_ray(spec: StudySpec) -> Any:
    """Start (or join) Ray with its dashboard and check the cluster can run a trial; once
    (face detection may have started it already: study.tuning.detection)."""
    import ray

    from study.tuning import ray_internals

    if ray.is_initialized():
        return ray
    ray_internals.quiet_authentication_log(spec.verbose)
    ray_internals.redact_driver_command()
    if not spec.verbose:  # Tune's classic reporter prints nothing at verbose 0; the new one still does
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_internals.keep_sigterm_handler():  # the study's (study.terminal.stopping)
        context = ray.init(
            address=spec.address,
            log_to_driver=spec.verbose,  # the trials' own log lines (checkpoints saved, ...) only with -v
            include_dashboard=True,
            dashboard_host=spec.dashboard_host,
            logging_level="INFO" if spec.verbose else "ERROR",  # Ray's chatter only with -v
            runtime_env={"env_vars": WORKER_ENV},
        )
    filter_stderr(spec.verbose)  # after Ray's local processes started: none of them inherits the filter
    short_tracebacks(spec.verbose)
    if context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url} (token: `ray get-auth-token`; docs: Watching a study)")
    private_token_file()
    check_resources(*node_shapes(ray, spec.cluster_config), spec)
    return ray


def private_token_file() -> None:
    """Ray's token file (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token, which Ray writes
    readable by everyone) made readable by its owner only: the token lets code run on the cluster."""
    path = os.path.expanduser(os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join("~", ".ray", "auth_token"))
    if os.path.isfile(path) and os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)
        print(f"Made {path} (Ray's authentication token) readable by its owner only (mode 600).")


Shape = dict[str, float]  # a node's resources, e.g. {"CPU": 8, "GPU": 1}


def node_shapes(ray: Any, cluster_config: str | None) -> tuple[list[Shape], dict[str, Shape | None]]:
    """The resources of each live node, and of each node type the cluster's autoscaler may
    add (None where its config leaves them to be detected). Ray has no public call for the
    latter: the types come from the cluster config the autoscaler runs (--cluster-config,
    by default ~/ray_bootstrap_config.yaml, where `ray up` puts it on the head), or from
    the node groups Ray's state API holds (KubeRay reports them)."""
    live = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    path = cluster_config or os.path.expanduser("~/ray_bootstrap_config.yaml")
    if os.path.isfile(path):
        with open(path) as f:
            types = (yaml.safe_load(f) or {}).get("available_node_types", {})
        return live, {name: t.get("resources") or None for name, t in types.items() if t.get("max_workers", 1) > 0}
    from study.tuning import ray_internals

    return live, ray_internals.autoscaler_node_groups()


def check_resources(live: list[Shape], addable: dict[str, Shape | None], spec: StudySpec) -> None:
    """Refuse a per-trial request no node can ever grant (Ray would wait forever): a trial's
    CPUs and GPUs must fit on one node, live or of a type the autoscaler may add. When only
    such a type fits, say that the study waits for the autoscaler to add one."""
    need = {"CPU": spec.cpus_per_trial or 1, "GPU": spec.gpus_per_trial}

    def fits(shape: Shape | None) -> bool:  # None: a node type whose resources Ray detects at launch
        return shape is None or all(shape.get(key, 0) >= amount for key, amount in need.items())

    if any(fits(shape) for shape in live):
        return
    wanted = "CPU {CPU:g}, GPU {GPU:g}".format(**need)
    if types := [name for name, shape in addable.items() if fits(shape)]:
        print(f"No live node has {wanted} for a trial; the autoscaler can add node type {types[0]!r}: waiting for it.")
        return
    largest = ", ".join(sorted({shape_text(s) for s in live})) or "none"
    kinds = ", ".join(f"{name} ({shape_text(s)})" for name, s in addable.items()) or "none known (see --cluster-config)"
    raise UserError(
        f"A trial asks for {wanted} on one node (--cpus-per-trial, --gpus-per-trial), more than any node "
        f"has or the autoscaler can add. Live nodes: {largest}; node types it can add: {kinds}. Lower "
        f"the request, or add a node type that has it to the cluster config."
    )


def shape_text(shape: Shape | None) -> str:
    if shape is None:
        return "resources detected at launch"
    return f"CPU {shape.get('CPU', 0):g}, GPU {shape.get('GPU', 0):g}"


def largest_node_cpus(ray: Any, cluster_config: str | None) -> float:
    """The CPUs of the largest node, live or addable (what a full-network trial may take)."""
    live, addable = node_shapes(ray, cluster_config)
    return max(shape.get("CPU", 0) for shape in [*live, *addable.values()] if shape)
