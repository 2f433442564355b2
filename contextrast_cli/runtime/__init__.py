"""The process runtime: ``launch`` (torchrun / srun variables), ``device`` (device, precision,
seeds, the process group: the one place that knows them) and ``collectives`` (what several
processes agree on: DDP, SyncBatchNorm, broadcasts, the stop vote). Everything else
receives a ``device.Runtime``.

May import: config, errors (never contrast, models, data or anything above).
"""
