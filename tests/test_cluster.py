"""cluster/: launcher configs, KubeRay manifests, the local multi-node script.

* Launcher YAMLs go through Ray's own path of ``ray up``: ``prepare_config`` (merge with the
  provider's defaults) then ``validate_config`` (Ray's JSON schema and its cross-field checks).
* KubeRay manifests are checked against the fields KubeRay's Go types require
  (ray-operator/apis/ray/v1: RayClusterSpec.headGroupSpec, HeadGroupSpec.template,
  WorkerGroupSpec.groupName/minReplicas/maxReplicas/template; rayStartParams is required in
  KubeRay < 1.2), plus what this project relies on (GPU limits, autoscaling, token auth, the shared
  claim, a RayJob running ``dvdf sweep``).
* ``local.sh`` is driven for real: up, status, a Ray driver that counts the nodes, down.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LOCAL_SH = CLUSTER / "local.sh"
NODE_SETUP = CLUSTER / "node_setup.sh"
LAUNCHER_CONFIGS = ["aws.yaml", "gcp.yaml"]
NODE_SETUP_ROLES = ("head", "gpu-worker", "cpu-worker")
RAY_VERSION_PINNED = "2.60.0"


def load(name: str):
    return yaml.safe_load((CLUSTER / name).read_text())


# --- ray up configs --------------------------------------------------------------------------------

def ray_validate(config: dict) -> dict:
    """What `ray up` does before touching a cloud: fill defaults, then validate (raises if invalid)."""
    util = pytest.importorskip("ray.autoscaler._private.util")
    prepared = util.prepare_config(copy.deepcopy(config))
    util.validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_passes_rays_schema(name):
    prepared = ray_validate(load(name))
    assert prepared["head_node_type"] == "head"
    assert set(prepared["available_node_types"]) == {"head", "gpu_worker", "cpu_worker"}


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU=0.5), "integer"),
    (lambda c: c["available_node_types"]["cpu_worker"].update(min_worker=1), "min_worker"),
    (lambda c: c.update(head_node_type="nope"), "head_node_type"),
])
def test_ray_validation_catches_broken_configs(mutate, expected):
    """The check above can fail: Ray rejects a fractional GPU count, a typo and a bad head type."""
    config = load("aws.yaml")
    mutate(config)
    with pytest.raises(Exception, match=expected):
        ray_validate(config)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_scales_to_zero_with_gpu_and_cpu_workers(name):
    config = load(name)
    types = config["available_node_types"]
    assert types["head"]["resources"] == {"CPU": 0}, "the head only coordinates"
    workers = {k: v for k, v in types.items() if k != "head"}
    assert all(v["min_workers"] == 0 for v in workers.values())
    assert 0 < config["idle_timeout_minutes"] <= 10
    assert types["gpu_worker"]["resources"]["GPU"] >= 1
    assert types["gpu_worker"]["resources"]["CPU"] >= 2 * types["gpu_worker"]["resources"]["GPU"]
    assert "GPU" not in types["cpu_worker"]["resources"]
    assert config["max_workers"] >= sum(v["max_workers"] for v in workers.values())


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_installs_dvdf_and_shared_storage_on_every_node(name):
    config = load(name)
    assert config["file_mounts"]["~/dvdf"] == "."
    head_setup, provider_sdk = config["head_setup_commands"]
    assert provider_sdk.startswith("~/dvdf-venv/bin/pip install")
    assert {"aws": "boto3", "gcp": "google-api-python-client"}[config["provider"]["type"]] in provider_sdk
    roles = {"head": [head_setup]}
    roles.update({k: v["worker_setup_commands"] for k, v in config["available_node_types"].items() if k != "head"})
    for node_type, commands in roles.items():
        (command,) = commands
        words = shlex.split(command)
        assert words[:2] == ["bash", "~/dvdf/cluster/node_setup.sh"], node_type
        assert words[2] in NODE_SETUP_ROLES
    assert shlex.split(roles["gpu_worker"][0])[2] == "gpu-worker"
    script = NODE_SETUP.read_text()
    assert f"RAY_VERSION={RAY_VERSION_PINNED}" in script
    assert "download.pytorch.org/whl/cu" in script and "pip\" install -q -e \"$CHECKOUT\"" in script
    assert 'SHARED=/mnt/dvdf' in script


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_turns_token_auth_on_and_keeps_the_dashboard_local(name):
    config = load(name)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head_start = " ".join(config["head_start_ray_commands"])
    worker_start = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head_start
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token ray start --address=$RAY_HEAD_IP:6379" in worker_start
    # Nothing opens Ray's ports: no extra AWS security-group rules.
    assert "IpPermissions" not in json.dumps(config["provider"])


def test_node_setup_script_parses_and_rejects_unknown_roles():
    for script in (NODE_SETUP, LOCAL_SH):
        subprocess.run(["bash", "-n", str(script)], check=True)
    # The role is checked before anything is installed, so this is safe to run anywhere.
    bad = subprocess.run(["bash", str(NODE_SETUP), "laptop"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown role 'laptop'" in bad.stderr
    accepted = re.search(r"case \$ROLE in ([^)]*)\)", NODE_SETUP.read_text()).group(1)
    assert {r.strip() for r in accepted.split("|")} == set(NODE_SETUP_ROLES)


# --- KubeRay ---------------------------------------------------------------------------------------

POD_TEMPLATE = {
    "type": "object", "required": ["spec"],
    "properties": {"spec": {"type": "object", "required": ["containers"], "properties": {
        "containers": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "image"]}}}}},
}
REPLICAS = {"type": "integer", "minimum": 0}
RAY_CLUSTER_SPEC = {
    "type": "object", "required": ["headGroupSpec"],
    "properties": {
        "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"], "properties": {
            "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
            "template": POD_TEMPLATE}},
        "workerGroupSpecs": {"type": "array", "items": {
            "type": "object",
            "required": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"],
            "properties": {"groupName": {"type": "string"}, "replicas": REPLICAS,
                           "minReplicas": REPLICAS, "maxReplicas": REPLICAS,
                           "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
                           "template": POD_TEMPLATE}}},
    },
}


def kuberay_object(kind: str, spec_schema: dict) -> dict:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": kind},
        "metadata": {"type": "object", "required": ["name"]}, "spec": spec_schema}}


RAY_CLUSTER = kuberay_object("RayCluster", RAY_CLUSTER_SPEC)
RAY_JOB = kuberay_object("RayJob", {
    "type": "object", "required": ["entrypoint", "rayClusterSpec", "shutdownAfterJobFinishes"],
    "properties": {"entrypoint": {"type": "string"}, "rayClusterSpec": RAY_CLUSTER_SPEC,
                   "shutdownAfterJobFinishes": {"type": "boolean"},
                   "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0}}})


def validate_json(document, schema) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(document, schema)


def pods(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def test_raycluster_names_every_field_kuberay_requires():
    validate_json(load("kuberay/raycluster.yaml"), RAY_CLUSTER)


def test_kuberay_schema_check_can_fail():
    broken = load("kuberay/raycluster.yaml")
    del broken["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    with pytest.raises(Exception, match="maxReplicas"):
        validate_json(broken, RAY_CLUSTER)


def test_raycluster_gpu_group_autoscaling_auth_and_shared_volume():
    spec = load("kuberay/raycluster.yaml")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP" and not spec["headGroupSpec"].get("enableIngress")
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"gpu", "cpu"}
    for group in groups.values():
        assert group["minReplicas"] == 0 <= group["replicas"] <= group["maxReplicas"]
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(gpu_limits["nvidia.com/gpu"]) >= 1
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    claim = load("kuberay/storage.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for pod in pods(spec):
        (volume,) = pod["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": volume["name"], "mountPath": "/data"} in mounts


def test_rayjob_runs_dvdf_sweep_on_the_same_cluster_spec():
    from dvdf import cli
    from dvdf.tune.spec import load_sweep

    job = load("kuberay/rayjob.yaml")
    validate_json(job, RAY_JOB)
    assert job["spec"]["rayClusterSpec"] == load("kuberay/raycluster.yaml")["spec"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["dvdf", "sweep"]
    args = cli.build_parser().parse_args(words[1:])
    assert args.address == "auto" and args.storage.startswith("/data/")
    # The image's working directory is the repository root: the sweep file and overrides load.
    sweep = load_sweep(REPO / args.config, args.overrides)
    assert sweep.spec.data_dir.startswith("/data/") and sweep.spec.cache_dir.startswith("/data/")


def test_versions_and_image_tags_agree():
    import dvdf

    image = f"dvdf-ray:{dvdf.__version__}"
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{RAY_VERSION_PINNED}-" in dockerfile and f"-t {image} " in dockerfile
    for name in ("kuberay/raycluster.yaml", "kuberay/rayjob.yaml"):
        doc = load(name)
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        assert spec["rayVersion"] == RAY_VERSION_PINNED
        assert {c["image"] for pod in pods(spec) for c in pod["containers"]} == {image}


CREDENTIAL_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),                                  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"aws_secret_access_key\s*[:=]", re.I),
    re.compile(r"\"type\":\s*\"service_account\""),                  # GCP key file
    re.compile(r"^\s*(ssh_private_key|gcp_credentials)\s*:", re.M),   # launcher credential fields
    re.compile(r"RAY_AUTH_TOKEN\s*[:=]\s*['\"]?[A-Za-z0-9+/_-]{8,}"),      # a token value, not a path
]


def test_no_credentials_in_cluster_files():
    files = [p for p in CLUSTER.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        text = path.read_text()
        for pattern in CREDENTIAL_PATTERNS:
            assert not pattern.search(text), f"{path.relative_to(REPO)} matches {pattern.pattern}"


# --- local.sh --------------------------------------------------------------------------------------

class LocalCluster:
    """cluster/local.sh with its own state directory.

    The directory is short on purpose: Ray's Unix socket paths (<temp dir>/session_<date>/sockets/
    plasma_store) must stay under ~107 bytes, which pytest's tmp_path can exceed.
    """

    def __init__(self, workers: int = 2, worker_cpus: int = 1):
        self.dir = Path(tempfile.mkdtemp(prefix="dvlc-", dir="/tmp"))
        self.env = dict(os.environ, DVDF_LOCAL_DIR=str(self.dir), DVDF_LOCAL_WORKERS=str(workers),
                        DVDF_LOCAL_WORKER_CPUS=str(worker_cpus), RAY_AUTH_MODE="disabled")

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(["bash", str(LOCAL_SH), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"local.sh {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def settings(self) -> dict[str, str]:
        lines = self.run("env").stdout.splitlines()
        return dict(line.removeprefix("export ").split("=", 1) for line in lines)

    def node_pids(self) -> dict[str, tuple[int, int]]:
        """{node: (ray start pid, raylet pid)} from `local.sh status`."""
        table = {}
        for line in self.run("status", check=False).stdout.splitlines():
            fields = line.split()
            if len(fields) == 5 and fields[1] == "running":
                table[fields[0]] = (int(fields[2]), int(fields[3]))
        return table

    def close(self) -> None:
        self.run("down", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


NODES_PROBE = """
import json, ray
ray.init(address={address!r}, log_to_driver=False)
print(json.dumps([{{"alive": n["Alive"], "resources": n["Resources"]}} for n in ray.nodes()]))
"""


@pytest.mark.ray
@pytest.mark.slow
def test_local_cluster_up_status_down():
    cluster = LocalCluster()
    try:
        t0 = time.perf_counter()
        up = cluster.run("up")
        seconds_up = time.perf_counter() - t0
        assert "head + 2 workers" in up.stdout
        pids = cluster.node_pids()
        assert set(pids) == {"head", "worker1", "worker2"}
        assert all(alive(p) for pair in pids.values() for p in pair)
        settings = cluster.settings()
        assert Path(settings["DVDF_LOCAL_STORAGE"]).is_dir()

        probe = subprocess.run([sys.executable, "-c", NODES_PROBE.format(address=settings["RAY_ADDRESS"])],
                               env=cluster.env, capture_output=True, text=True, timeout=120, check=True)
        nodes = [n for n in json.loads(probe.stdout.splitlines()[-1]) if n["alive"]]
        assert len(nodes) == 3
        workers = [n for n in nodes if n["resources"].get("worker_node") == 1.0]
        assert len(workers) == 2 and all(n["resources"]["CPU"] == 1.0 for n in workers)
        (head,) = [n for n in nodes if "worker_node" not in n["resources"]]
        assert head["resources"].get("CPU", 0) == 0

        again = cluster.run("up", check=False)
        assert again.returncode == 1 and "already running" in again.stderr

        t0 = time.perf_counter()
        down = cluster.run("down")
        seconds_down = time.perf_counter() - t0
        assert down.stdout.count("stopped ") == 3
        deadline = time.time() + 10
        while any(alive(p) for pair in pids.values() for p in pair) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for pair in pids.values() for p in pair)
        assert cluster.run("status", check=False).returncode == 1
        print(f"local.sh up {seconds_up:.1f} s, down {seconds_down:.1f} s")
    finally:
        cluster.close()


def test_local_down_never_signals_a_process_it_did_not_start():
    """A PID file naming some other live process (PID reuse, a stale file) is left alone."""
    cluster = LocalCluster()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (cluster.dir / "head.pid").write_text(f"{bystander.pid}\n")
        (cluster.dir / "worker1.pid").write_text("not-a-pid\n")
        down = cluster.run("down")
        assert "stopped" not in down.stdout.replace("storage kept", "")
        assert bystander.poll() is None, "local.sh down killed a process it had not started"
        assert not (cluster.dir / "head.pid").exists()
        assert cluster.run("status", check=False).returncode == 1
    finally:
        bystander.send_signal(signal.SIGTERM)
        bystander.wait(timeout=10)
        cluster.close()


def test_local_script_usage_and_token_precondition(tmp_path):
    usage = subprocess.run(["bash", str(LOCAL_SH), "restart"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    env = dict(os.environ, DVDF_LOCAL_DIR=str(tmp_path / "s"), RAY_AUTH_MODE="token", HOME=str(tmp_path),
               RAY_AUTH_TOKEN="", RAY_AUTH_TOKEN_PATH="")
    no_token = subprocess.run(["bash", str(LOCAL_SH), "up"], env=env, capture_output=True, text=True)
    assert no_token.returncode == 1 and "ray get-auth-token --generate" in no_token.stderr


# --- sweeps on the local multi-node cluster ----------------------------------------------------------

# Small enough for two cores; each trial reports (and checkpoints) IQL_STEPS / EVAL_EVERY times, so
# there is time to kill a node between its first checkpoint and its end.
IQL_STEPS, EVAL_EVERY = 1200, 100
TINY_SWEEP = f"""
name: tiny
base:
  device: cpu
  data:
    target_fraction: 0.5
    collect: {{transitions: 1000, sac_steps: 300, snapshot_every: 100, eval_episodes: 1, num_envs: 2}}
  value: {{steps: 50, hidden: 32}}
  scorer: {{contrastive: {{steps: 50, hidden: 32, embed_dim: 8}}}}
  iql: {{steps: {IQL_STEPS}, hidden: 32}}
  eval: {{every: {EVAL_EVERY}, episodes: 1}}
groups:
  - robots: [hopper]
    shifts: [kinematic]
    qualities: [medium]
methods: [dvdf-igdf]
search: {{mode: optuna, num_samples: 2, startup_trials: 1}}
seeds: [100]
resources: {{cpus: 1, gpu: 0}}
max_failures: 2
"""


def start_sweep(cluster: LocalCluster, workdir: Path) -> tuple[subprocess.Popen, Path]:
    """`dvdf sweep` against the local cluster; everything it keeps goes to the shared storage path."""
    settings = cluster.settings()
    storage = Path(settings["DVDF_LOCAL_STORAGE"])
    (workdir / "tiny.yaml").write_text(TINY_SWEEP)
    command = ["dvdf", "sweep", "tiny.yaml", "--address", settings["RAY_ADDRESS"], "--quiet",
               "--storage", str(storage / "results"),
               "--set", f"data_dir={storage / 'data'}", "--set", f"cache_dir={storage / 'cache'}"]
    log = open(workdir / "sweep.log", "w")
    process = subprocess.Popen(command, cwd=workdir, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)
    return process, storage / "results" / "tiny"


def finish(process: subprocess.Popen, workdir: Path, timeout: float) -> str:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    output = (workdir / "sweep.log").read_text()
    assert process.returncode == 0, output[-4000:]
    return output


def trial_rows(experiment: Path) -> dict[str, list[dict]]:
    """{trial directory: its results, one dict per evaluation} read from the storage path."""
    return {d.name: [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()]
            for d in sorted(experiment.iterdir()) if (d / "params.json").exists()}


def node_of(cluster: LocalCluster, pid: int) -> str:
    """The local node whose raylet started worker process `pid` (Ray logs it as ..._<pid>.log there)."""
    found = {p.parts[len(cluster.dir.parts)]
             for p in cluster.dir.glob(f"*/session_*/logs/python-core-worker-*_{pid}.log")}
    assert len(found) == 1, f"worker process {pid} found on nodes {found}"
    return found.pop()


def assert_every_trial_finished(experiment: Path, rows: dict[str, list[dict]]) -> None:
    with open(experiment / "trials.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) == 2
    assert {row["status"] for row in table} == {"finished"}
    for trial, results in rows.items():
        assert results[-1]["finished"] == 1.0, trial
        assert results[-1]["step"] == IQL_STEPS, trial


@pytest.mark.ray
@pytest.mark.slow
def test_tiny_sweep_runs_its_trials_on_the_worker_nodes(tmp_path):
    cluster = LocalCluster()
    try:
        cluster.run("up")
        t0 = time.perf_counter()
        process, experiment = start_sweep(cluster, tmp_path)
        finish(process, tmp_path, timeout=900)
        print(f"tiny sweep on the local cluster: {time.perf_counter() - t0:.1f} s")
        rows = trial_rows(experiment)
        assert_every_trial_finished(experiment, rows)
        nodes = {node_of(cluster, r["pid"]) for results in rows.values() for r in results}
        assert nodes <= {"worker1", "worker2"} and nodes
    finally:
        cluster.close()


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert process.poll() is None, f"the sweep ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.mark.ray
@pytest.mark.slow
def test_worker_node_killed_mid_trial_resumes_from_checkpoint_elsewhere(tmp_path):
    cluster = LocalCluster()
    try:
        cluster.run("up")
        t0 = time.perf_counter()
        process, experiment = start_sweep(cluster, tmp_path)

        # Both trials run (one per worker: 1 CPU each, none on the head) and have a checkpoint.
        wait_for(lambda: len({p.parent for p in experiment.glob("*/checkpoint_*")}) == 2 if experiment.is_dir()
                 else False, 900, "both trials' first checkpoints", process)
        # Kill early: the sweep starts both trials together, so each is far from its end here.
        done = [max(int(c.name.split("_")[1]) for c in trial.glob("checkpoint_*")) + 1
                for trial in {c.parent for c in experiment.glob("*/checkpoint_*")}]
        assert max(done) < IQL_STEPS // EVAL_EVERY // 2, f"trials too far along to kill one mid-trial: {done}"
        pids = cluster.node_pids()
        victim = "worker1"
        os.kill(pids[victim][1], signal.SIGKILL)   # its raylet: the node dies with its trial
        killed_at = time.perf_counter() - t0
        finish(process, tmp_path, timeout=900)
        print(f"kill test: killed {victim} at {killed_at:.1f} s, sweep done at {time.perf_counter() - t0:.1f} s")

        assert not alive(pids[victim][1])
        rows = trial_rows(experiment)
        assert_every_trial_finished(experiment, rows)
        moved = {t: [node_of(cluster, r["pid"]) for r in results] for t, results in rows.items()}
        (resumed,) = [t for t, nodes in moved.items() if victim in nodes]
        # It started on the killed node and ended on the other one...
        assert moved[resumed][0] == victim and moved[resumed][-1] == "worker2"
        # ...continuing from its checkpoint: had it started over, an evaluation step would repeat.
        steps = [r["step"] for r in rows[resumed]]
        assert steps == sorted(set(steps)) and len(steps) == IQL_STEPS // EVAL_EVERY
        assert moved[resumed].index("worker2") >= 1
        assert "Failure # 1" in (experiment / resumed / "error.txt").read_text()   # Ray recorded the loss
    finally:
        cluster.close()
