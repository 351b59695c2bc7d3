"""Where a sweep's jobs run: in this process (`local`), or as SLURM jobs through submitit (`slurm`; `submitit-local`
is the same path on this machine, through submitit's local executor). A job is a list of steps, each what an ordinary
`mae-bench` command does; under submitit every task (one per GPU) runs each step as `torchrun` would, with the env://
variables torch.distributed reads (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK) taken from submitit's
JobEnvironment, whose ranks are those the official MAE `submitit_pretrain.py` uses. Steps are `steps.Step`; locally
each is called in this process, under submitit each runs as a fresh process from its command line.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mae_core.errors import MaeBenchError

from ..error_lines import Terminated
from .steps import Step, run_steps, say

LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass
class Job:
    """Steps that run in order on the same processes (a sweep cell); complete once every `done` file exists."""
    name: str
    steps: list[Step]
    done: list[Path]
    logs: Path  # submitit's folder for this job (scripts, stdout, stderr)

    @property
    def complete(self) -> bool:
        return all(p.exists() for p in self.done)


class JobTask:
    """What a submitit job runs on each of its tasks (one per GPU): every step as a fresh process, as `torchrun`
    starts it, with the env:// variables from submitit's JobEnvironment (the official submitit_pretrain.py's
    ranks). A fresh process and port per step: a process group cannot be re-created in a process on one port."""

    def __init__(self, name: str, steps: list[Step]):
        self.name = name
        self.steps = [replace(s, call=None) for s in steps]  # pickled by submitit: the command lines only

    def __call__(self) -> str:
        import submitit

        job = submitit.helpers.TorchDistributedEnvironment()
        dist_env = {"MASTER_ADDR": job.master_addr, "RANK": str(job.rank), "WORLD_SIZE": str(job.world_size),
                    "LOCAL_RANK": str(job.local_rank), "LOCAL_WORLD_SIZE": str(job.local_world_size)}
        os.environ.update(dist_env)  # for this process's own messages (rank 0 prints)

        def execute(index: int, step: Step) -> None:
            # each rank selects cuda:LOCAL_RANK itself, so CUDA_VISIBLE_DEVICES keeps all of the node's GPUs
            env = {**os.environ, **dist_env, "MASTER_PORT": str(job.master_port + index)}
            # the requeue signal is this process's to handle (checkpoint below), not the step's
            self._child = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", *step.argv], env=env,
                                           preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
            code = self._child.wait()
            if code in (130, 143):  # Ctrl-C or SIGTERM reached the step: stop the same way
                raise Terminated() if code == 143 else KeyboardInterrupt()
            if code:
                raise MaeBenchError(f"exit {code}: mae-bench {' '.join(step.argv)}")

        run_steps(self.steps, f"{self.name}: ", execute, kind="sweep ")
        return self.name

    def checkpoint(self, *args, **kwargs):
        """Before a timeout or preemption submitit requeues this: the running step is stopped (SIGTERM: it unwinds,
        its last checkpoint kept); the requeued job skips finished steps and resumes that one (--resume auto)."""
        import submitit

        child = getattr(self, "_child", None)
        if child is not None and child.returncode is None:
            _stop(child)
        return submitit.helpers.DelayedSubmission(JobTask(self.name, self.steps))


def _stop(child: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM a step and reap it. Called from a signal handler that interrupted `child.wait()`, which holds the
    Popen's wait lock, so this waits with os.waitpid itself."""
    child.terminate()
    deadline = time.time() + grace_s
    while True:
        try:
            if os.waitpid(child.pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # reaped already
            return
        if time.time() > deadline:
            child.kill()
            deadline = float("inf")
        time.sleep(0.1)


def parse_minutes(text: str | int) -> int:
    """SLURM time limits: minutes, or [D-]HH:MM[:SS]."""
    s = str(text).strip()
    if s.isdigit():
        return int(s)
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?", s)
    if not m:
        raise MaeBenchError(f"--time expects minutes or [D-]HH:MM[:SS], got {text!r}")
    days, hours, mins, secs = (int(g or 0) for g in m.groups())
    return days * 1440 + hours * 60 + mins + (1 if secs else 0)


@dataclass
class Launcher:
    """How jobs run: `local` in this process; `slurm` / `submitit-local` as submitit jobs of `nodes` x
    `gpus_per_node` tasks (one process per GPU), the caller waiting for them."""
    kind: str = "local"
    nodes: int = 1
    gpus_per_node: int = 1
    partition: str | None = None
    account: str | None = None
    time_min: int = 4320  # 72 h, the official MAE submitit default
    cpus_per_task: int = 10
    mem_gb_per_gpu: int = 40

    def __post_init__(self):
        if self.kind not in LAUNCHERS:
            raise MaeBenchError(f"unknown launcher {self.kind!r}; choose one of {', '.join(LAUNCHERS)}")
        for name in ("nodes", "gpus_per_node", "time_min"):
            if getattr(self, name) < 1:
                raise MaeBenchError(f"--{name.replace('_', '-')} must be at least 1")
        if self.kind != "slurm" and self.nodes > 1:
            raise MaeBenchError(f"--nodes {self.nodes} needs --launcher slurm (the {self.kind} launcher has one node)")
        if self.kind == "local" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise MaeBenchError("a sweep runs its steps one after another; for several GPUs use --launcher "
                                "submitit-local --gpus-per-node N (this machine) or slurm, not torchrun")
        if self.kind != "local":
            try:
                import submitit  # noqa: F401
            except ImportError:
                raise MaeBenchError(f"--launcher {self.kind} needs submitit: pip install -e '.[slurm]'") from None
        if self.kind == "slurm" and shutil.which("srun") is None:
            raise MaeBenchError("--launcher slurm: no `srun` on PATH; run the sweep on a SLURM login node")

    @property
    def world_size(self) -> int:
        """Processes each step runs on: nodes x GPUs under submitit, one in-process."""
        return 1 if self.kind == "local" else self.nodes * self.gpus_per_node

    def run(self, jobs: list[Job]) -> None:
        """Run every job that is not complete; raise one error naming each failed job."""
        todo = [j for j in jobs if not j.complete]
        for j in jobs:
            if j.complete:
                say(f"{j.name}: done already")
        if self.kind == "local":
            for j in todo:
                run_steps(j.steps, f"{j.name}: ", kind="sweep ")
            return
        self._submit_and_wait(todo)

    def executor(self, folder: Path):
        import submitit

        ex = submitit.AutoExecutor(folder=folder, cluster="slurm" if self.kind == "slurm" else "local",
                                   slurm_max_num_timeout=30)
        ex.update_parameters(nodes=self.nodes, gpus_per_node=self.gpus_per_node, tasks_per_node=self.gpus_per_node,
                             cpus_per_task=self.cpus_per_task, mem_gb=self.mem_gb_per_gpu * self.gpus_per_node,
                             timeout_min=self.time_min, slurm_signal_delay_s=120,
                             **({"slurm_partition": self.partition} if self.partition else {}),
                             **({"slurm_account": self.account} if self.account else {}))
        return ex

    def _submit_and_wait(self, jobs: list[Job]) -> None:
        """SLURM: every job at once, then wait for all; this machine (submitit-local): one job after another,
        since each uses all the GPUs given."""
        submitted, failed = [], []
        for j in jobs:
            ex = self.executor(j.logs)
            ex.update_parameters(name=f"mae-{j.name}"[:64])
            handle = ex.submit(JobTask(j.name, j.steps))
            say(f"{j.name}: submitted job {handle.job_id} ({self.nodes} node(s) x {self.gpus_per_node} task(s); "
                f"logs in {j.logs})")
            submitted.append((j, handle))
            if self.kind == "submitit-local":
                failed += self._wait([submitted.pop()])
        failed += self._wait(submitted)
        if failed:
            raise MaeBenchError(f"{len(failed)} job(s) failed: " + "; ".join(failed))

    @staticmethod
    def _wait(submitted) -> list[str]:
        failed = []
        for j, handle in submitted:
            try:
                handle.results()  # every task's; raises when one failed
                say(f"{j.name}: job {handle.job_id} finished")
            except Exception as e:  # submitit's FailedJobError holds the task's traceback
                lines = [ln.strip() for ln in str(e).splitlines() if re.search(r"(Error|Exception)\b.*:", ln)]
                failed.append(f"{j.name} (job {handle.job_id}: {lines[-1] if lines else type(e).__name__}; "
                              f"log {handle.paths.stderr})")
        return failed
