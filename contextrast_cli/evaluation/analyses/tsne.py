"""t-SNE (van der Maaten and Hinton, 2008) of a seeded pixel sample's embeddings with scikit-learn."""

import numpy as np

MIN_POINTS = 5


def tsne_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """(N, 2) t-SNE coordinates of (N, D) vectors (perplexity 30, or (N - 1) / 3 when fewer points;
    PCA initialisation; ``seed`` fixes the result); None below ``MIN_POINTS`` points."""
    from sklearn.manifold import TSNE

    if len(vectors) < MIN_POINTS:
        return None
    perplexity = min(30.0, (len(vectors) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(vectors, np.float32)).astype(np.float32)
