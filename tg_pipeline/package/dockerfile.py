"""Step 3: render the Dockerfile (and requirements.txt) of a job's build context."""
from __future__ import annotations

import sys
from importlib.metadata import version as installed_version
from pathlib import Path

from tg_pipeline.package import templates
from tg_pipeline.paths import write_if_changed
from tg_pipeline.config.requirements import image_requirements
from tg_pipeline.package.sdist import sdist_name


def requirements(dependencies: list[str]) -> list[str]:
    """The image's pip requirements: the job's, plus the cloudpickle that reads the payload.

    cloudpickle is pinned to the local version (unless the job declares its own cloudpickle
    requirement): payloads pickled by value need the same cloudpickle (and Python minor version) to load.
    """
    return image_requirements(dependencies, installed_version('cloudpickle'))


def render_values(job: str, package: str, version: str, module: str, base_image: str, project: str,
                  dependencies: list[str]) -> dict:
    return dict(job=job, package=package, version=version, module=module, base_image=base_image, project=project,
                requirements=requirements(dependencies),
                sdist_root=sdist_name(module, version),
                sdist_file=f'{sdist_name(module, version)}.tar.gz',
                python_version='%d.%d' % sys.version_info[:2])


def make_dockerfile(context_dir: Path, extra_templates: tuple[str, ...] = (), **values) -> Path:
    """Write Dockerfile and requirements.txt into ``context_dir``; untouched files keep their mtimes."""
    values = render_values(**values)
    context_dir = Path(context_dir)
    write_if_changed(context_dir / 'requirements.txt', ''.join(f'{r}\n' for r in values['requirements']).encode())
    path = context_dir / 'Dockerfile'
    write_if_changed(path, templates.render('Dockerfile.j2', extra_templates, **values).encode())
    return path


def job_image_settings(job: str, package: str, version: str, module: str, project: str, **_) -> dict:
    """What the job image adds to its dependency image's config besides the code layer: its labels (how every
    tg_pipeline command finds a project's images), its PYTHONPATH (the unpacked sdist) and its command. Cheap:
    doit computes it for every job when it loads the tasks (nothing here reads the requirements)."""
    labels = {'tg_pipeline.project': project, 'tg_pipeline.package': package, 'tg_pipeline.version': version,
              'tg_pipeline.module': module, 'tg_pipeline.job': job}
    env = {'PYTHONPATH': f'/opt/tg_pipeline/{sdist_name(module, version)}', 'PYTHONUNBUFFERED': '1'}
    return dict(labels=labels, env=env, cmd=['python', '-m', module])
