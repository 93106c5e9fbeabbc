"""tg_pipeline's Jinja templates, shipped inside the package as ``tg_pipeline.templates`` (pyproject's package-dir
maps this folder there), so that one lookup, through the import system, finds them in a checkout, an editable
install and a wheel alike: see :mod:`tg_pipeline.package.templates`."""
