"""The fast tier: no engine, no SSH, no registry, no pip install, no crowd of doit processes (fakes only)."""
