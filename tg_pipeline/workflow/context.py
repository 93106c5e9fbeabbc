"""What every step action gets: one doit run over one configuration (from pipeline.toml or the Python API)."""
from __future__ import annotations
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from tg_pipeline.console import Console
from tg_pipeline.paths import JobPaths

if TYPE_CHECKING:
    from tg_pipeline.config.schema import Config


@dataclass
class Context:
    """One doit run over one configuration (from pipeline.toml, or built by the Python API).

    ``payloads`` (job -> {resource: pickled bytes}) replace the serialize step of those jobs; ``sweeps``
    (job -> variant labels) go with payloads that hold a ``variants`` resource. With ``capture`` (the Python
    API), errors and results are kept for the caller instead of printed, and a run step prints the job's output
    only (see :meth:`run_console`). ``console``: what the steps print (default: the process's, verbose with
    ``[docker] verbose``; the Python API's is quiet with ``Containering.silent``)."""
    config: Config
    variables: dict = field(default_factory=dict)
    payloads: dict = field(default_factory=dict)
    sweeps: dict = field(default_factory=dict)
    capture: bool = False
    results: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    requested: list = field(default_factory=list)  # the run steps this doit command runs ([]: not known)
    console: Console | None = None
    records: dict = field(default_factory=dict)  # job -> the record of what its last run here ran (provenance)
    cells: dict = field(default_factory=dict)  # job -> the source that defined a job pickled by value (notebook)
    _hosts: Any = None  # the hosts this command's lifecycle steps share (tg_pipeline.hosts.host.Hosts)

    def __post_init__(self):
        if self.console is None:
            self.console = Console(verbose=bool(self.config.docker.verbose))

    def host(self, where: str):
        """The host ``where`` names, shared by this command's steps that ask for it (``status``, ``logs``,
        ``result``, ``stop`` of every job: one connection); closed by :meth:`close_hosts`, at the latest when
        the process exits."""
        if self._hosts is None:
            import atexit
            from tg_pipeline.hosts.host import Hosts
            self._hosts = Hosts(self.config)
            atexit.register(self.close_hosts)
        return self._hosts.get(where)

    def close_hosts(self) -> None:
        if self._hosts is not None:
            import atexit
            atexit.unregister(self.close_hosts)  # (the Python API makes a Context per call)
            hosts, self._hosts = self._hosts, None
            hosts.close()

    def steps_console(self) -> Console:
        """``console``: what the steps print (set by the constructor when it was not given)."""
        assert self.console is not None  # (__post_init__)
        return self.console

    def flag(self, name: str) -> bool:
        """A yes/no command-line variable: detach=1, follow=true ..."""
        return str(self.variables.get(name, '')).lower() in ('1', 'true', 'yes')

    def where(self) -> str:
        from tg_pipeline.hosts.host import check_where
        return check_where(str(self.variables.get('where') or 'local'))

    def paths(self, job: str) -> JobPaths:
        return JobPaths.of(self.config, job)

    def resource_names(self, job: str) -> list[str]:
        if job in self.payloads:
            return sorted(self.payloads[job])
        return ['job', 'variants'] if self.config.job(job).sweep else ['job']

    def variant_labels(self, job: str) -> list[str]:
        if job in self.payloads:
            return self.sweeps.get(job) or ['job']
        j = self.config.job(job)
        return [label for label, _ in j.variants()] if j.sweep else ['job']

    def delivery(self, job: str):
        """How the job's image gets to where it runs (:mod:`tg_pipeline.image.delivery`)."""
        from tg_pipeline.image.delivery import Delivery
        return Delivery.of(self.config, job)

    def image_tag(self, job: str) -> str:
        return self.delivery(job).tag

    def loads_here(self, job: str) -> bool:
        """Whether build_image loads the job image into the local engine for this command."""
        return self.delivery(job).loads_here(self.requested)

    def registry_auth(self):
        from tg_pipeline.image.registry import auth_config
        return auth_config(self.config.registry)

    def payload_key(self, job: str) -> dict:
        return {name: hashlib.sha256(data).hexdigest() for name, data in self.payloads[job].items()}

    def run_console(self, where: str = '') -> Console:
        """What a run step on ``where`` prints the job's own output and its run's lines with (and a command on
        runs, ``status``, ``logs``...): shown even when ``console`` is quiet (``Containering.silent`` quiets the
        build steps only), but for a swarm sweep in the Python API, whose caller gets its values."""
        return self.steps_console().replace(quiet=self.capture and where == 'swarm')

    def delivery_console(self) -> Console:
        """What a run step prints getting the job image to its host with (a build there, a transfer, a pull, a
        push from there): nothing in the Python API, whose caller gets the run's outcome."""
        return self.steps_console().replace(quiet=True) if self.capture else self.steps_console()

    def say(self, job: str, result) -> None:
        """Keep a run's result for the Python API; tell the command-line user the value and where it is
        (also at ``doit -v 0``, which hides the rest of a task's output)."""
        self.results[job] = result
        if not self.capture:
            from tg_pipeline.runs.lifecycle import report
            report(result, self.outcome_console())

    def outcome_console(self) -> Console:
        """Where a run's outcome is said (``Result: ...``, its final line): doit's outcome stream, which shows
        also at ``doit -v 0``."""
        from tg_pipeline.compat.doit import outcome_stream
        return self.steps_console().replace(out=outcome_stream())


def config_origin_is_api(origin: str) -> bool:
    from tg_pipeline.config.schema import API_ORIGIN
    return API_ORIGIN in origin
