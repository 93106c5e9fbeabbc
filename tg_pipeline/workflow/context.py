"""What every step action gets: one doit run over one configuration (from pipeline.toml or the Python API)."""
from __future__ import annotations
import hashlib
from dataclasses import dataclass, field
from tg_pipeline.paths import JobPaths


@dataclass
class Context:
    """One doit run over one configuration (from pipeline.toml, or built by the Python API).

    ``payloads`` (job -> {resource: pickled bytes}) replace the serialize step of those jobs; ``sweeps``
    (job -> variant labels) go with payloads that hold a ``variants`` resource. With ``capture``, errors
    are kept in ``errors`` for the caller instead of printed."""
    config: object
    variables: dict = field(default_factory=dict)
    payloads: dict = field(default_factory=dict)
    sweeps: dict = field(default_factory=dict)
    capture: bool = False
    results: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    image_here: bool = True  # build_image loads the job image into the local engine (see tasks.image_needed_here)

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

    def image_tag(self, job: str) -> str:
        j = self.config.job(job)
        return j.image or f'{self.config.docker.image_prefix}{j.package}:{j.version}'

    def transfer(self) -> str:
        return self.config.remote.transfer or ('registry' if self.config.registry.address else 'ssh')

    def registry_auth(self):
        from tg_pipeline.image.registry import auth_config
        return auth_config(self.config.registry)

    def payload_key(self, job: str) -> dict:
        return {name: hashlib.sha256(data).hexdigest() for name, data in self.payloads[job].items()}

    def say(self, job: str, result) -> None:
        """Keep a run's result for the Python API; tell the command-line user the value and where it is
        (also at ``doit -v 0``, which hides the rest of a task's output)."""
        self.results[job] = result
        if not self.capture:
            from tg_pipeline.compat.doit import outcome_stream
            from tg_pipeline.runs.lifecycle import report
            from tg_pipeline.console import Console
            report(result, Console(out=outcome_stream()))


def config_origin_is_api(origin: str) -> bool:
    from tg_pipeline.config.schema import API_ORIGIN
    return API_ORIGIN in origin
