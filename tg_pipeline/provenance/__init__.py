"""What ran: every run's provenance, kept beside its result, and what is made of it.

* :mod:`.store`: the content-addressed store under ``build/.provenance/`` (sdists, configurations, patches,
  notebook cells, dependency sets), each object kept once per hash whatever the number of runs using it;
* :mod:`.record`: a run's record (``build/JOB/runs/WHERE/what-ran/RUN_ID.json``): what it references in the
  store, the git state, the host, the command line, start and end;
* :mod:`.gitstate`: commit, branch and the uncommitted changes under the source roots, through ``git``;
* :mod:`.dependencies`: the dependency set inside a dependency image, recorded once when it is built;
* :mod:`.hostfacts`: the engine, OS, CPUs, memory and GPUs of the host a run happens on;
* :mod:`.payload`: a pickled payload described without running any of its code;
* :mod:`.notebook`: the source of the notebook cells (or script) that defined a job pickled by value;
* :mod:`.sources`: the files of a kept sdist (for ``doit export`` and the code section of ``doit diff``);
* :mod:`.compare` and :mod:`.shown`: ``doit diff``, ``doit show`` and ``doit runs`` as text.
"""
