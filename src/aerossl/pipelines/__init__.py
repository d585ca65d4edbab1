"""What drives several training runs: multi-stage pipelines (:mod:`~aerossl.pipelines.stages`),
the label-budget sweep (:mod:`~aerossl.pipelines.sweep`) and the old-task evaluation of
transfer runs (:mod:`~aerossl.pipelines.old_task`). Each run is an ordinary engine run."""
