"""The embedded default end to end (through a real single-node SLURM when one can be started),
and a training job killed mid-way that resumes from its checkpoint.

CI pays for ONE end-to-end run: the module fixture tries to bring up SLURM (Debian's
slurmctld + slurmd + munge, installed with apt-get if missing and allowed) and runs
`snakemake --profile slurm --configfile workflow/default.yaml` through it for one job of every
rule that goes to SLURM (SLURM_TARGETS), then the rest of the DAG locally on the same folder;
when SLURM cannot be started the whole DAG runs locally and the SLURM test skips with the reason.
(Each SLURM job pays ~15 s of its own for sbatch, the inner Snakemake and srun: an early, 66-job
version of the DAG took 12 min through the 2-CPU node against ~6 locally; today's has 151 jobs.)
Set LASER_REPRO_NO_SLURM=1 to skip the bring-up, LASER_REPRO_NO_APT=1 to forbid apt-get.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from test_workflow import SNAKEMAKE, copy_workflow

DEFAULT = ["--configfile", "workflow/default.yaml"]
# through SLURM: Laser and KAR on synthetic, seed 0, with what they need: one job of each submitted rule
# (prepare_dataset, train_small: their BERT4Rec, train_small_gpu: KAR, kar_template, train_large) and the
# localrules it takes
SLURM_TARGETS = [f"results/default/runs/synthetic/{method}/main/seed~0/metrics.json" for method in ("laser-c", "kar")]
SLURM_RULES = ("prepare_dataset", "train_small", "train_small_gpu", "kar_template", "train_large")
E2E_TIMEOUT = 1800  # seconds for the whole embedded default (target: 10 min on 2 idle cores)
# the tests of the e2e fixture: one xdist group, handed out first (the largest unit), on one worker
E2E_GROUP = pytest.mark.xdist_group("embedded-default")
SLURM_TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged", "munge")


# ---------------------------------------------------------------- single-node SLURM


@dataclass
class Slurm:
    """A single-node SLURM cluster this test started (daemons killed by their pids)."""

    conf: Path
    pids: list[int] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)  # files written outside the test folder
    up: bool = False  # the node came up: jobs may need cancelling

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def stop(self) -> None:
        """Cancel what is still queued or running, then stop the daemons we started."""
        try:
            if not self.up:
                raise OSError("no cluster to query")
            ids = _run(["squeue", "-h", "-t", "pending,running", "-o", "%i"], env=self.env).stdout.split()
            if ids:
                _run(["scancel", *ids], env=self.env)
            for _ in range(30):
                if not _run(["squeue", "-h", "-t", "running,completing"], env=self.env).stdout.strip():
                    break
                time.sleep(1)
        except (OSError, subprocess.SubprocessError):
            pass
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for path in self.created:
            path.unlink(missing_ok=True)


def _run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_slurm() -> str | None:
    """apt-get install the daemons when missing; returns why it could not, or None."""
    if all(shutil.which(t) for t in SLURM_TOOLS):
        return None
    if os.environ.get("LASER_REPRO_NO_APT"):
        return "SLURM is not installed and LASER_REPRO_NO_APT forbids apt-get"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is unavailable (needs root on Debian/Ubuntu)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(["apt-get", "update"], timeout=240, env=env)
        out = _run(["apt-get", "install", "-y", "slurmctld", "slurmd", "slurm-client", "munge"], timeout=400, env=env)
    except subprocess.TimeoutExpired:
        return "apt-get install of slurmctld/slurmd/slurm-client/munge timed out"
    missing = [t for t in SLURM_TOOLS if not shutil.which(t)]
    return f"apt-get could not install {missing}: {out.stderr[-500:]}" if missing else None


MUNGE_PIDFILE = Path("/run/munge/munged.pid")


def _ensure_munge(started: list[int]) -> str | None:
    """Start munged (with the package's key) unless a working one is running; its pid goes
    to ``started`` so that the test stops it again."""
    if _run(["munge", "-n"]).returncode == 0:
        return None
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        if shutil.which("mungekey"):
            _run(["mungekey", "--create"])
        else:
            key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    _run(["su", "-s", "/bin/sh", "munge", "-c", "munged"])
    if _run(["munge", "-n"]).returncode != 0:
        _run(["munged", "--force"])
    if _run(["munge", "-n"]).returncode != 0:
        return "munged could not be started"
    if MUNGE_PIDFILE.exists():
        started.append(int(MUNGE_PIDFILE.read_text().strip()))
    return None


def _node_line() -> tuple[str, int, int]:
    """(node name, CPUs, usable memory MB) of this machine, from `slurmd -C`."""
    out = _run(["slurmd", "-C"]).stdout
    name = re.search(r"NodeName=(\S+)", out)[1]
    cpus = int(re.search(r"CPUs=(\d+)", out)[1])
    mem = int(re.search(r"RealMemory=(\d+)", out)[1])
    return name, cpus, int(mem * 0.8)


SYSTEM_CONF = Path("/etc/slurm/slurm.conf")  # where srun looks when SLURM_CONF is unset
MARKER = "# laser-repro single-node test cluster (tests/test_workflow_e2e.py)"


def slurm_conf_text(root: Path, node: str, cpus: int, mem_mb: int, ports: tuple[int, int]) -> str:
    """A single-node slurm.conf: no accounting, no cgroups, two partitions, two fake GPUs.

    The profile sends training to partition `gpu` with `--gres=gpu:1`; the node declares two
    GRES GPUs (backed by /dev/null and /dev/zero) so two training jobs can run at once.
    """
    return f"""{MARKER}
ClusterName=laserrepro
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
SchedulerParameters=sched_interval=2
GresTypes=gpu
NodeName={node} CPUs={cpus} RealMemory={mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={node} MaxTime=INFINITE State=UP
"""


def start_slurm(root: Path) -> tuple[Slurm | None, str]:
    """Bring up slurmctld + slurmd on this machine; (cluster, '') or (None, reason)."""
    if os.environ.get("LASER_REPRO_NO_SLURM"):
        return None, "LASER_REPRO_NO_SLURM is set"
    if sys.platform != "linux":
        return None, "single-node SLURM needs Linux"
    munge_pids: list[int] = []
    try:
        reason = _install_slurm() or _ensure_munge(munge_pids)
    except (OSError, subprocess.SubprocessError) as err:
        reason = f"{type(err).__name__}: {err}"
    if reason:
        Slurm(Path("/nonexistent"), pids=munge_pids).stop()
        return None, reason
    root.mkdir(parents=True, exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    (root / "spool").mkdir(exist_ok=True)
    node, cpus, mem = _node_line()
    conf = root / "slurm.conf"
    text = slurm_conf_text(root, node, cpus, mem, (_free_port(), _free_port()))
    conf.write_text(text)
    # Snakemake's slurm-jobstep executor drops SLURM_CONF before its inner `srun`, so the
    # job steps read the system path: write it there unless a real site config lives there.
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.read_text().startswith(MARKER):
        Slurm(conf, pids=munge_pids).stop()
        return None, f"{SYSTEM_CONF} exists (a real SLURM site?); not overwriting it"
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.write_text(text)
    # two GRES "GPUs" backed by harmless device files (a CPU machine has none to bind)
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File=/dev/null\nNodeName={node} Name=gpu File=/dev/zero\n")
    cluster = Slurm(conf, pids=munge_pids, created=[SYSTEM_CONF])
    for daemon in ("slurmctld", "slurmd"):
        proc = _run([daemon, "-f", str(conf)], timeout=30)
        pidfile = root / f"{daemon}.pid"
        for _ in range(50):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.2)
        if not pidfile.exists():
            cluster.stop()
            log = root / f"{daemon}.log"
            tail = log.read_text()[-800:] if log.exists() else proc.stderr[-800:]
            return None, f"{daemon} did not start: {tail}"
        cluster.pids.append(int(pidfile.read_text().strip()))
    for _ in range(60):
        state = _run(["sinfo", "-h", "-N", "-o", "%T"], env=cluster.env).stdout.strip()
        if state.startswith("idle"):
            cluster.up = True
            return cluster, ""
        time.sleep(1)
    cluster.stop()
    return None, f"the SLURM node never became idle (state {state!r})"


def slurm_overrides(workdir: Path, cpus: int = 1, mem_mb: int = 2000) -> list[str]:
    """Command-line resources that fit the embedded default on this node.

    Partitions and GRES come from the profile unchanged; only CPUs, memory and runtime shrink.
    """
    profile = yaml.safe_load((workdir / "slurm" / "config.yaml").read_text())
    resources = []
    for rule, res in profile["set-resources"].items():
        res = {**res, "mem_mb": mem_mb, "runtime": 30}
        res.pop("cpus_per_task", None)
        resources += [f"{rule}:{k}={v}" for k, v in res.items()]
    threads = [f"{rule}=1" for rule in profile.get("set-threads", {})]
    return [
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", *threads,
        "--set-resources", *resources,
        "--default-resources", f"mem_mb={mem_mb}", "runtime=30", "slurm_partition=cpu",
    ]


# ---------------------------------------------------------------- the end-to-end run


@dataclass
class EndToEnd:
    workdir: Path
    mode: str  # "slurm" (SLURM_TARGETS through SLURM, then the rest locally) or "local"
    reason: str  # why not SLURM
    proc: subprocess.CompletedProcess  # the run that completed the DAG (local)
    seconds: float
    slurm_proc: subprocess.CompletedProcess | None = None  # the run through SLURM
    slurm_jobs: list[dict] = field(default_factory=list)  # name, partition, gres, state of every SLURM job
    slurm_made: dict[str, int] = field(default_factory=dict)  # SLURM_TARGETS -> mtime (ns) after the SLURM run


@pytest.fixture(scope="module")
def e2e(tmp_path_factory) -> EndToEnd:
    workdir = copy_workflow(tmp_path_factory.mktemp("default"))
    cluster, reason = start_slurm(tmp_path_factory.mktemp("slurm"))
    t0 = time.perf_counter()
    slurm_proc, jobs, made = None, [], {}
    try:
        if cluster is not None:
            # targets go first (--configfile takes several values), and before --default-resources
            cmd = [*SNAKEMAKE, *SLURM_TARGETS, "--profile", "slurm", *DEFAULT, *slurm_overrides(workdir)]
            slurm_proc = subprocess.run(cmd, cwd=workdir, env=cluster.env, capture_output=True, text=True,
                                        timeout=E2E_TIMEOUT)
            jobs = slurm_jobs(cluster)
            made = {t: (workdir / t).stat().st_mtime_ns for t in SLURM_TARGETS if (workdir / t).is_file()}
    finally:
        if cluster is not None:
            cluster.stop()
    cmd = [*SNAKEMAKE, "--cores", "2", *DEFAULT]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=E2E_TIMEOUT)
    return EndToEnd(workdir, "slurm" if cluster else "local", reason, proc, time.perf_counter() - t0,
                    slurm_proc, jobs, made)


def slurm_jobs(cluster: Slurm) -> list[dict]:
    """Every job slurmctld still remembers (MinJobAge=3600 keeps finished ones)."""
    out = _run(["squeue", "-h", "-t", "all", "-o", "%j|%P|%b|%T|%k"], env=cluster.env).stdout
    keys = ("name", "partition", "gres", "state", "comment")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


def declared_outputs(workdir: Path) -> list[tuple[str, str]]:
    """(output file, rule) of every job of the DAG (`snakemake --summary`)."""
    out = subprocess.run(
        [*SNAKEMAKE, "--summary", *DEFAULT], cwd=workdir, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    assert rows and rows[0][0] == "output_file", out[-2000:]
    return [(r[0], r[2]) for r in rows[1:]]


@pytest.mark.slow
@E2E_GROUP
def test_embedded_default_end_to_end(e2e):
    """Every declared output of the embedded default exists and is non-empty."""
    assert e2e.proc.returncode == 0, f"{e2e.mode} run failed:\n{e2e.proc.stderr[-4000:]}"
    outputs = declared_outputs(e2e.workdir)
    rules = {rule for _, rule in outputs}
    assert {"train_small", "train_large", "make_table2", "plot_fig4", "compare_to_paper"} <= rules
    empty = [f for f, _ in outputs if not (e2e.workdir / f).is_file() or (e2e.workdir / f).stat().st_size == 0]
    assert not empty, f"missing or empty outputs: {empty}"
    # every table and figure of the paper
    for name in [f"table{i}.md" for i in range(1, 6)] + ["compare.md"]:
        assert (e2e.workdir / "results/default" / name).stat().st_size > 100, name
    for i in range(2, 6):
        png = e2e.workdir / f"results/default/figures/fig{i}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each run records the config the workflow resolved for it
    metrics = e2e.workdir / "results/default/runs/synthetic/laser-c/K~2/seed~0/metrics.json"
    record = yaml.safe_load(metrics.read_text())
    assert record["config"]["mformer"]["n_experts"] == 2
    assert record["config"]["backbone"] == "tiny-llama"
    # nothing left to do
    dry = subprocess.run([*SNAKEMAKE, "-n", *DEFAULT], cwd=e2e.workdir, capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    print(f"embedded default ({e2e.mode}): {e2e.seconds:.0f} s")


def _strict_json(path: Path) -> dict:
    def no_constant(name):
        raise AssertionError(f"{path}: {name} in metrics.json (not strict JSON)")

    return json.loads(path.read_text(), parse_constant=no_constant)


CELL = re.compile(r"^(—|(\*\*|<u>)?-?\d+\.\d+( ± \d+\.\d+)?( \(n=\d+\))?(\*\*|</u>)?(\\\*)?†?‡?)$")


@pytest.mark.slow
@E2E_GROUP
def test_embedded_default_numbers_are_sane(e2e):
    """No NaN anywhere, every trained ID model above the untrained one and chance, every table cell parses."""
    assert e2e.proc.returncode == 0, e2e.proc.stderr[-4000:]
    runs = e2e.workdir / "results/default/runs"
    records = {p.parent.relative_to(runs).as_posix(): _strict_json(p) for p in runs.glob("*/*/*/seed~*/metrics.json")}
    # 46 ID and Laser runs + RecGURU, ZESRec, KAR, LRURec, RECFORMER, LlamaRec, LLM4REC x 2 data sets
    # + 3 RECFORMER transfers
    assert len(records) == 46 + 7 * 2 + 3
    for name, rec in records.items():
        for split in ("valid", "test"):
            assert all(math.isfinite(v) for v in rec[split].values()), name
    for data in ("synthetic", "synthetic-b"):
        n_items = _strict_json(e2e.workdir / f"results/default/data/{data}/stats.json")["items"]
        chance = 10 / n_items  # recall@10 of a random ranking
        for name, rec in records.items():
            if name.startswith(f"{data}/") and "train_instances" in rec and rec["train_instances"] > 0:
                assert rec["test"]["recall@10"] > chance, (name, rec["test"]["recall@10"], chance)
    untrained = records["synthetic/bert4rec/frac~0/seed~0"]
    assert untrained["train_instances"] == 0
    for model in ("sasrec", "bert4rec", "gru4rec", "fdsa", "recguru", "zesrec", "kar", "lrurec", "recformer"):
        rec = records[f"synthetic/{model}/main/seed~0"]
        assert rec["test"]["ndcg@10"] > untrained["test"]["ndcg@10"], model
    table2 = (e2e.workdir / "results/default/table2.md").read_text()
    for artifact in ("table2", "table3", "table4", "table5", "compare"):  # the tables' own run check (each run
        text = (e2e.workdir / f"results/default/{artifact}.md").read_text()  # against the workflow config) finds
        assert ": stale, " not in text, (artifact, text[text.find(": stale, ") - 200:][:400])  # every run fresh
    for label in ("RecGURU", "ZESRec", "RECFORMER"):  # issue 12: their rows are filled on the embedded default
        row = next(line for line in table2.splitlines() if line.startswith(f"| {label} |"))
        assert "—" not in row and len(re.findall(r"\d+\.\d\d", row)) == 6, row
    for table in ("table2", "table3", "table4", "table5"):
        text = (e2e.workdir / f"results/default/{table}.md").read_text()
        body = text[:text.index("\n\n-")]  # the table itself, before its footnotes
        for line in body.splitlines()[4:]:
            cells = [c.strip() for c in line.strip("|").split("|")][1:]
            for c in cells:
                assert c == "" or CELL.match(c), (table, line, c)


@pytest.mark.slow
@E2E_GROUP
def test_embedded_default_runs_through_slurm(e2e):
    """`snakemake --profile slurm` submitted one job of every non-local rule to SLURM (training on the GPU
    partition), and the local run that completed the DAG took their outputs as they were."""
    if e2e.mode != "slurm":
        pytest.skip(f"single-node SLURM could not be started: {e2e.reason}")
    assert e2e.slurm_proc.returncode == 0, e2e.slurm_proc.stderr[-4000:]
    log = e2e.slurm_proc.stdout + e2e.slurm_proc.stderr
    assert "Using profile slurm" in log
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == len(e2e.slurm_jobs) > 0, (submitted, e2e.slurm_jobs)
    assert all(j["state"] == "COMPLETED" for j in e2e.slurm_jobs), e2e.slurm_jobs
    def jobs_of(rule: str) -> list[dict]:
        return [j for j in e2e.slurm_jobs if re.match(rf"rule_{rule}(_wildcards|$)", j["comment"])]

    for rule in SLURM_RULES:
        assert jobs_of(rule), (rule, e2e.slurm_jobs)
    # what SLURM made stays: the local run did not train those runs again
    assert sorted(e2e.slurm_made) == sorted(SLURM_TARGETS)
    assert {t: (e2e.workdir / t).stat().st_mtime_ns for t in SLURM_TARGETS} == e2e.slurm_made
    # the profile's per-rule resources reached sbatch: training through a language model on partition gpu with a
    # GPU; ID models (BERT4Rec), KAR's template knowledge and the data on partition cpu without one
    gpu = jobs_of("train_small_gpu") + jobs_of("train_large")
    assert all(j["partition"] == "gpu" and "gpu" in j["gres"] for j in gpu), gpu
    cpu = jobs_of("train_small") + jobs_of("kar_template") + jobs_of("prepare_dataset")
    assert all(j["partition"] == "cpu" and "gpu" not in j["gres"] for j in cpu), cpu
    # localrules (resolved configs, tables, figures) never went to SLURM
    assert not [j for j in e2e.slurm_jobs if re.search(r"make_table|plot_fig|write_run_config", j["comment"])]


# ---------------------------------------------------------------- kill and resume

# six phase-1 epochs of ~1.5 s each: after "phase 1 epoch 1" is logged, four are left to kill the job in
RESUME_OVERLAY = """
run:
  laser:
    phases.phase1_max_epochs: 6
    phases.phase1_patience: 6
    phases.phase2_epochs: 1
"""
RUN = "results/default/runs/synthetic/laser-c/main/seed~0"


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the trainer process")
def test_killed_training_job_resumes_from_its_checkpoint(tmp_path):
    """Kill a Laser training job mid-way (SIGKILL to Snakemake and the trainer): no outputs
    appear; `snakemake --rerun-incomplete` continues from checkpoint.pt: the epochs already
    done are not trained again and training goes on at the next one. (That a resumed run ends
    with the metrics of an uninterrupted one is the trainers' own test.)"""
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "resume.yaml").write_text(RESUME_OVERLAY)
    configs = ["--configfile", "workflow/default.yaml", "resume.yaml"]
    target = f"{RUN}/metrics.json"
    dependency = "results/default/runs/synthetic/bert4rec/main/seed~0/metrics.json"
    subprocess.run([*SNAKEMAKE, dependency, "--cores", "2", *configs], cwd=workdir, check=True,
                   capture_output=True, timeout=300)

    log = workdir / RUN / "train.log"
    proc = subprocess.Popen([*SNAKEMAKE, target, "--cores", "1", *configs], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and "phase 1 epoch 1:" in log.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the training job ended before it could be killed"
        for pid in [*reversed(descendants(proc.pid)), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        proc.wait(timeout=30)
    assert (workdir / RUN / "checkpoint.pt").exists()
    assert not (workdir / target).exists(), "outputs must appear only when the job completes"

    # a SIGKILL leaves Snakemake's lock behind (as a power loss would): unlock, then rerun
    subprocess.run([*SNAKEMAKE, "--unlock", *configs], cwd=workdir, check=True, capture_output=True, timeout=300)
    rerun = subprocess.run([*SNAKEMAKE, target, "--cores", "1", "--rerun-incomplete", *configs], cwd=workdir,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    text = log.read_text()
    resumed = re.search(r"resumed from \S+checkpoint\.pt: phase1, epoch (\d+)", text)
    assert resumed, text[-2000:]
    next_epoch = int(resumed[1])
    assert next_epoch >= 1  # killed after "phase 1 epoch 1" was logged: epoch 0 was checkpointed
    for epoch in range(next_epoch):
        assert text.count(f"phase 1 epoch {epoch}:") == 1, f"epoch {epoch} trained again"
    after = text[resumed.end():]
    assert f"phase 1 epoch {next_epoch}:" in after and "reported (phase" in after
    assert json.loads((workdir / target).read_text())["config"]["phases"]["phase1_max_epochs"] == 6

    # a changed run config restarts the run: the stale checkpoint is removed, not refused
    idrec_run = workdir / dependency.rsplit("/", 1)[0]
    assert (idrec_run / "checkpoint.pt").exists()
    (workdir / "changed.yaml").write_text("run:\n  idrec:\n    max_epochs: 2\n")
    changed = subprocess.run([*SNAKEMAKE, dependency, "--cores", "1", *configs, "changed.yaml"], cwd=workdir,
                             capture_output=True, text=True, timeout=600)
    assert changed.returncode == 0, changed.stderr[-3000:]
    job_log = workdir / "results/default/logs/train_small/synthetic/bert4rec/main/seed~0.log"
    assert ("checkpoint of a different run config (seed 0, it had max_epochs: 3 (now 2)); setting it aside in "
            "stale/") in job_log.read_text()
    assert json.loads((workdir / dependency).read_text())["config"]["max_epochs"] == 2
