"""The stages of a training job, each a function of the job's :class:`~.context.JobContext`.

In the order :mod:`mlcycle.trainer.jobs` runs them, each recording its stage
in the job's progress as it starts: ``features`` (fit and build the feature
sets the search asks for, :mod:`.search`), ``search`` and ``blend``
(:mod:`.search`), ``evaluate`` (:mod:`.evaluate`), ``behaviour`` (the behavioural suite,
:mod:`.behaviour`), ``export`` (:mod:`.export`),
``bless`` (infra-validation, the comparison with production and the registry,
:mod:`.bless`) and ``report`` (:mod:`.report`).
"""
