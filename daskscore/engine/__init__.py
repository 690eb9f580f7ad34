"""The client side of a job: the loop over its mini-batches and its collaborators.

- :mod:`.job`: :class:`~.job.Job`, the loop: plan, place, submit, watch, finish;
- :mod:`.jobspec`: what the workers and runners are told (:class:`JobSpec`);
- :mod:`.placement`: which workers, and mini-batches cut into packs;
- :mod:`.resume`: what an earlier run of the step left committed;
- :mod:`.thresholds`: error budgets, counted live;
- :mod:`.summary`: the final numbers, the reports and the :class:`StepRunResult`;
- :mod:`.live`: the job's state on the scheduler (dashboard, reaping, cancel);
- :mod:`.cluster`: the embedded cluster;
- :mod:`.detached`: fire-and-forget jobs (``daskscore submit|status|wait|cancel``).
"""
