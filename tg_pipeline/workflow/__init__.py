"""The doit wiring: the task graph (:mod:`.tasks`), the step actions (:mod:`.build_steps`, :mod:`.run_steps`,
:mod:`.commands`) over a :class:`~.context.Context`, the settings as task params (:mod:`.params`), the
reporter and exit code (:mod:`.reporter`), locks shared by doit processes (:mod:`.locks`), ``doit graph``
(:mod:`.graph`), ``check_remote`` (:mod:`.preflight`), and the one doit set-up (:mod:`.main`)."""
