"""The papers' analyses (METHOD.md section 6.6), computed on one evaluation pass by ``run``:

* ``groups``: IoU of the head, mid and tail classes (three equal-count groups by the training
  split's pixel counts);
* ``sizes``: mIoU by object size (connected ground-truth regions, bucketed by area);
* ``bands``: boundary IoU at several band widths in pixels (``evaluation.boundary``'s bands);
* ``similarity``: the mean cosine similarity of misclassified pixels to the class anchors against
  their distance from the error boundary (the loss's anchors, BANE's distance maps);
* ``gradcam``: Grad-CAM per class (``pytorch-grad-cam``) on a few seeded images;
* ``tsne``: t-SNE (scikit-learn) of each tapped layer's embeddings on a seeded pixel sample.

Each returns plain numbers and arrays; ``viz`` draws them, ``experiments.analyze`` writes them.
"""
