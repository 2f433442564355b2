"""t-SNE (van der Maaten and Hinton, 2008) of a seeded pixel sample's embeddings with scikit-learn."""

import numpy as np

MIN_POINTS = 5


def tsne_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """(N, 2) t-SNE coordinates of (N, D) vectors (perplexity 30, or (N - 1) / 3 when fewer points;
    PCA initialisation; ``seed`` fixes the result); None below ``MIN_POINTS`` points.

    One OpenMP thread: a sample of a few hundred points takes seconds on it, and the Barnes-Hut
    gradient's threads spin-wait on a busy machine (2 threads beside other work: 10-20x slower,
    BENCHMARKS.md); one thread also makes the result independent of the core count."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if len(vectors) < MIN_POINTS:
        return None
    perplexity = min(30.0, (len(vectors) - 1) / 3)
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            np.asarray(vectors, np.float32)).astype(np.float32)
