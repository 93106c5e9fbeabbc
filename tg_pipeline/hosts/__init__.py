"""Where runs happen: the local engine (:mod:`.engine`), and a :class:`~.host.Host` (local engine, engine
over SSH, swarm manager) chosen in one place (:func:`~.host.open_host`)."""
