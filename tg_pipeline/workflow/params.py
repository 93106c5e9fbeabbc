"""The command-line settings as doit task ``params``: what ``doit help TASK`` lists, and doit's own form of them.

Settings arrive as doit command-line variables, ``name=value`` (``memory=0.5``, ``run.cpu=2``,
``jobs.Train.kwargs.lr=0.01``, ``where=remote``; see :data:`tg_pipeline.config.ALIASES` and
``CONTROL_VARS``), read before the tasks are made. Every task declares the settings it takes as doit
``params``, so that ``doit help TASK`` lists them, each with what it does and its value now. doit also
accepts a declared param in its own form after the task's name (``doit run_local --memory=0.5``):
:func:`command_line` reads those from the command line together with the variables, so both forms make
the same configuration, and the value doit parses for the task is the same one.
"""
from __future__ import annotations

from typing import Mapping

from tg_pipeline.config.schema import ALIASES, COMMAND_LINE, JOB_KEYS, SECTIONS, JobConfig, _specs
from tg_pipeline.config.text import toml_value
from tg_pipeline.errors import ConfigError

# what each setting does, for `doit help TASK` (tests/unit/test_params.py: every setting has one)
SETTINGS = {
    'package.name': 'the project\'s name on shared hosts (default: the folder\'s name)',
    'package.version': 'the version every job is built as, unless the job sets its own',
    'package.source_roots': 'folders packaged with every job, relative to pipeline.toml',
    'package.dependencies': 'pip requirements of the image\'s dependency layer',
    'package.build_dir': 'where the task files and doit\'s state go, relative to pipeline.toml',
    'docker.base_image': 'the image every job image starts from (default: python:X.Y-slim of this Python)',
    'docker.image_prefix': 'put before every image name, e.g. team-',
    'docker.build_on': 'local (default): the dependency image is built here; remote: by the remote engine',
    'docker.verbose': '1: print the whole build log as it comes (0: one progress line; a failed build prints it all)',
    'run.env': 'names of variables copied from this environment into the container',
    'run.cpu': 'CPU limit in cores, 0 = none',
    'run.memory_gb': 'memory limit in GB, 0 = none',
    'run.on_interrupt': 'what Ctrl-C does to an attached run: stop, or detach (it keeps running)',
    'run.env_missing': 'a variable named in env but unset here: error (the default), or ignore (it arrives unset)',
    'remote.host': 'the remote Docker host: an address, or a Host alias of ~/.ssh/config',
    'remote.user': 'SSH login name (default: from ~/.ssh/config)',
    'remote.port': 'SSH port, 0 = from ~/.ssh/config',
    'remote.identity_file': 'SSH private key file (default: from ~/.ssh/config)',
    'remote.accept_unknown_host_keys': 'true: trust a host key seen for the first time',
    'remote.connect_timeout': 'seconds to wait for the SSH login',
    'remote.transfer': 'how the image reaches the remote: registry, or ssh (only the missing layers)',
    'remote.ssh_config': 'an ssh config file to read instead of ~/.ssh/config (like ssh -F); env TG_PIPELINE_SSH_CONFIG',
    'remote.ssh_client': 'openssh (one shared connection per host and project), paramiko, or auto; '
                         'env TG_PIPELINE_SSH_CLIENT',
    'remote.control_persist': 'seconds the shared SSH connection stays after its last use (0: closed after each command)',
    'swarm.manager': 'the swarm manager: local (this engine) or remote (the [remote] host)',
    'swarm.max_concurrent': 'tasks of a sweep running at once, 0 = all',
    'swarm.cpu_reservation': 'CPU a node must have free for each task',
    'swarm.memory_reservation_gb': 'memory in GB a node must have free for each task',
    'swarm.constraints': 'placement constraints, e.g. node.labels.gpu == true',
    'swarm.schedule_timeout': 'seconds a task may wait for a node before the run fails',
    'swarm.labels': 'your labels on the service and its containers',
    'registry.address': 'the registry images are pushed to, e.g. registry.example.com:5000',
    'registry.username_env': 'name of the variable holding the registry login',
    'registry.password_env': 'name of the variable holding the registry password',
}
# GPUs, data and caches (see README), in [run] and in a job's table
SETTINGS.update({
    'run.gpus': 'GPUs for each job: all, a count, or device ids (0,2; one: device=1); 0 = none',
    'run.shm_gb': 'size of /dev/shm in GB, 0 = Docker\'s 64 MB',
    'run.ipc': 'host: share the host\'s IPC namespace and /dev/shm',
    'run.max_runtime_s': 'stop the job after this many seconds, reported as timed out; 0 = no limit',
    'run.mounts': 'host folders of the host the job runs on: HOST:CONTAINER, read-only unless :rw',
    'run.caches': 'named volumes of this project kept between runs on a host: NAME = /path/in/the/container',
    'run.ports': 'container ports published on the host: PORT, HOST_PORT:PORT or IP:HOST_PORT:PORT',
    'run.env_files': 'NAME=value files read here (relative to pipeline.toml), sent as env values are',
    'swarm.gpu_resource': 'the nodes\' generic resource that gpus = N reserves on swarm',
})
JOB_SETTINGS = {
    'factory': 'module:Class (or function) that builds the job',
    'args': 'positional arguments of the factory',
    'kwargs': 'keyword arguments of the factory',
    'package': 'the job\'s package and image name (default: the job\'s name)',
    'version': 'the job\'s version (default: package.version)',
    'dependencies': 'more pip requirements for this job',
    'env': 'more variables copied into this job\'s container',
    'cpu': 'this job\'s CPU limit in cores (default: run.cpu)',
    'memory_gb': 'this job\'s memory limit in GB (default: run.memory_gb)',
    'env_missing': 'this job\'s answer to an unset env variable: error or ignore (default: run.env_missing)',
    'build_on': 'where this job\'s dependency image is built for run_remote: local or remote (default: '
                'docker.build_on)',
    'sweep': 'one variant per combination of these values (run_swarm)',
    'image': 'name:tag of the image, instead of package:version',
}
JOB_SETTINGS.update({
    'gpus': 'this job\'s GPUs (default: run.gpus)', 'shm_gb': 'this job\'s /dev/shm in GB (default: run.shm_gb)',
    'ipc': 'this job\'s IPC namespace: host or its own (default: run.ipc)',
    'max_runtime_s': 'this job\'s time limit in seconds (default: run.max_runtime_s)',
    'mounts': 'more host folders for this job (after run.mounts)', 'caches': 'more caches (after run.caches)',
    'ports': 'more published ports (after run.ports)', 'env_files': 'more env files (after run.env_files)',
})
# the doit variables that are no setting of pipeline.toml: (help, yes/no flag)
CONTROLS = {
    'job': ('the job (default: every job)', False),
    'detach': ('start the run and return at once, printing its run id', True),
    'where': ('whose runs: local (default), remote or swarm', False),
    'run_id': ('the run (default: the job\'s latest)', False),
    'follow': ('stream the output until the run ends, then collect it', True),
    'all_projects': ('every project\'s runs on the host, read only', True),
    'days': ('remove ended runs older than this many days (default 7; 0: every ended run)', False),
    'keep': ('job images to keep per job, the newest (default 2)', False),
    'all': ('draw every task, the lifecycle ones too', True),
    'files': ('draw the files: dependencies and targets', True),
}
CONTROLS.update({
    'cmd': ('the shell command line to run in the job\'s container, e.g. cmd="nvidia-smi"', False),
    'port': ('the port of the job\'s container to reach, e.g. port=6006', False),
    'local_port': ('the port here that forwards to it (default: the same as port)', False),
    'caches': ('also remove this project\'s cache volumes from the host', True),
})
STEP_CONTROLS = {
    'run_local': ('job', 'detach'), 'run_remote': ('job', 'detach'), 'run_swarm': ('job', 'detach'),
    'status': ('job', 'where', 'run_id', 'all_projects'), 'logs': ('job', 'where', 'run_id', 'follow'),
    'stop': ('job', 'where', 'run_id'), 'result': ('job', 'where', 'run_id'),
    'cleanup': ('where', 'days', 'keep'), 'graph': ('job', 'all', 'files'), 'check_remote': (),
}
STEP_CONTROLS.update({'exec': ('job', 'where', 'run_id', 'cmd'),
                      'forward': ('job', 'where', 'run_id', 'port', 'local_port'),
                      'cleanup': (*STEP_CONTROLS['cleanup'], 'caches')})
METAVARS = {'float': 'N', 'int': 'N', 'bool': 'true|false', 'strs': 'A,B', 'array': '[...]', 'table': '{...}',
            'strtable': '{...}', 'str': 'TEXT', 'any': 'VALUE'}
ALIAS_METAVARS = {'memory': 'GB', 'cpu': 'CORES', 'reserve_memory': 'GB', 'reserve_cpu': 'CORES'}


def metavar_of(spec) -> str:
    """What a value of this setting looks like: its choices, or its kind."""
    return '|'.join(c for c in spec.choices if c) if spec.kind == 'choice' else METAVARS[spec.kind]


def is_setting(name: str) -> bool:
    """A name that may be given on the command line (as ``name=value`` or as ``--name=value``)."""
    return name in CONTROLS or name in ALIASES or name.split('.')[0] in (*SECTIONS, 'jobs')


def command_line(variables: Mapping[str, str], argv: list[str]) -> dict[str, str]:
    """The ``name=value`` variables, and the settings given doit's way (``--memory=0.5``, ``--memory 0.5``,
    ``--detach``) in ``argv``; the same setting given twice, differently, is an error."""
    found, index = dict(variables), 0
    while index < len(argv):
        name, equals, value = argv[index][2:].partition('=')
        used = [index]
        if argv[index].startswith('--') and is_setting(name):
            if not equals and CONTROLS.get(name, ('', False))[1]:
                value = '1'
            elif not equals:
                following = argv[index + 1] if index + 1 < len(argv) else '-'
                if following.startswith('-'):
                    index += 1
                    continue  # doit says what is missing
                value, index = following, index + 1
                used.append(index)
            if name in found and found[name] != value:
                raise _twice(name, found[name], value, [a for i, a in enumerate(argv) if i not in used])
            found[name] = value
        index += 1
    return found


def _twice(name: str, first: str, second: str, rest: list[str]) -> ConfigError:
    import shlex
    once = [a for a in rest if a != f'{name}={first}'] + [f'{name}={second}']
    error = ConfigError(f'{name} is given twice: {name}={first} and --{name}={second}', key=name,
                        hint=f'give it once: doit {shlex.join(once)}')
    error.file = COMMAND_LINE
    return error


def _shown(value) -> str:
    try:
        text = toml_value(value)
    except TypeError:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + '...'


def _param(name: str, help_text: str, metavar: str = 'VALUE', flag: bool = False) -> dict:
    param = {'name': name, 'long': name, 'type': bool if flag else str, 'default': False if flag else '',
             'help': help_text.replace('%', '%%')}  # doit formats the help with %(default)s
    if not flag:
        param['metavar'] = metavar
    return param


def _setting(config, dotted: str, name: str | None = None, value=None) -> dict:
    section, key = dotted.split('.', 1)
    spec = _specs(SECTIONS[section])[key]
    metavar = ALIAS_METAVARS.get(name) or metavar_of(spec)
    value = getattr(getattr(config, section), key) if value is None else value
    origin = config.origins.get(dotted, 'default').replace(str(config.path), config.path.name)
    entry = f' (one entry: {dotted}.NAME=VALUE)' if spec.kind in ('table', 'strtable') else ''
    same = f' (as {dotted})' if name else ''
    return _param(name or dotted, f'{SETTINGS[dotted]}{entry}{same}; now {_shown(value)} ({origin})', metavar)


def _job_settings(config, job: str | None) -> list[dict]:
    if job is None:
        return [_param('jobs.NAME.KEY', 'a job\'s own setting, given as jobs.NAME.KEY=VALUE, e.g. '
                                        'jobs.Train.kwargs.lr=0.01 (doit help STEP:NAME lists them); KEY: '
                                        + ', '.join(JOB_KEYS))]
    found = []
    for key in JOB_KEYS:
        dotted = f'jobs.{job}.{key}'
        value = getattr(config.job(job), key)
        origin = config.origins.get(dotted, 'default').replace(str(config.path), config.path.name)
        entry = f' (one entry: {dotted}.NAME=VALUE)' if key in ('kwargs', 'sweep') else ''
        found.append(_param(dotted, f'{JOB_SETTINGS[key]}{entry}; now {_shown(value)} ({origin})',
                            metavar_of(_specs(JobConfig)[key])))
    return found


def settings(config, job: str | None) -> list[dict]:
    """Every setting of pipeline.toml as params: the short names first, then ``section.key``, then the job's."""
    short = [_setting(config, dotted, name) for name, dotted in ALIASES.items()]
    return short + [_setting(config, dotted) for dotted in SETTINGS] + _job_settings(config, job)


def for_task(step: str, settings_params: list[dict], jobs: list[str]) -> list[dict]:
    """The params of ``step``: its own controls (``job=``, ``where=`` ...), then every setting."""
    controls = []
    for name in STEP_CONTROLS.get(step, ('job',)):
        help_text, flag = CONTROLS[name]
        if name == 'job':
            help_text = f'{help_text}: {", ".join(jobs)}'
        controls.append(_param(name, help_text, 'NAME' if name == 'job' else 'VALUE', flag))
    return controls + settings_params


def run_steps(argv: list[str], steps) -> list[str]:
    """The steps (of ``steps``) a doit command line runs: ``doit run_remote job=X``, ``doit run run_remote:X``;
    [] for one that merely names them (``doit help run_remote``, ``doit info ...``) and for plain ``doit``."""
    words = [a for a in argv if not a.startswith('-') and '=' not in a]
    if words[:1] == ['run']:
        words = words[1:]
    if not words or words[0].split(':')[0] not in steps:
        return []
    return [w.split(':')[0] for w in words]


__all__ = ['command_line', 'settings', 'for_task', 'is_setting', 'run_steps']

