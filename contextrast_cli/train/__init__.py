"""Training: the ``trainer`` loop, one ``step``, the ``objective`` it minimises, stop
``signals``, ``resume`` and ``--init-from``, run folders (``runs``), the run's own record
(``runlog``: metrics.jsonl, curves.png, TensorBoard) and progress ``reporting``.

May import: viz, export, evaluation, contrast, models, data, runtime, config, errors (never
experiments or cli).
"""
