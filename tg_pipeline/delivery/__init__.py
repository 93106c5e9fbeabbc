"""The original's module layout (``tg.common.delivery.delivery``), for code written against it."""
from tg_pipeline.api import Containering, Packaging, install_package_and_get_loader

__all__ = ['Packaging', 'Containering', 'install_package_and_get_loader']
