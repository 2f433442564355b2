"""The one evaluation path: ``inference`` (scales, flips, sliding windows), ``metrics``
(confusion matrix), ``boundary`` (boundary IoU and F), ``feature_space`` (A and U),
``evaluator`` (a split, a checkpoint), ``onnx`` (an exported graph run and evaluated; the
sidecar's reader), ``writers`` (prediction PNGs) and ``predict`` (the ``predict`` command's
engine: checkpoints or graphs on people's own images and videos) with ``predict_inputs`` (the
files it reads and the names of their outputs), and ``analyses`` (the papers' analyses on the same
evaluation pass: class groups, object sizes, boundary bands, anchor similarity, Grad-CAM, t-SNE).

May import: contrast, models, data, runtime, config, errors, atomic (never train, viz, export,
experiments or cli).
"""
