"""The demo's model and data: multinomial logistic regression on synthetic blobs.

Everything is deterministic and generated locally (nothing is downloaded):

* :func:`make_dataset` draws ``num_classes`` Gaussian blobs in ``num_features``
  dimensions (fixed seed), a train set and a held-out test set;
* :func:`partition` splits the train set across clients **non-IID**: each client's label
  mix is drawn from a Dirichlet distribution (small ``alpha`` = more skew);
* :class:`LogisticRegression` holds ``[weights (features x classes), bias (classes)]``
  and trains with mini-batch SGD on the softmax cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "NUM_CLASSES",
    "NUM_FEATURES",
    "Dataset",
    "LogisticRegression",
    "client_data",
    "make_dataset",
    "partition",
]

NUM_CLASSES = 10
NUM_FEATURES = 20
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Dataset:
    """Features ``x`` (n x features) and integer labels ``y`` (n)."""

    x: FloatArray
    y: IntArray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: IntArray) -> Dataset:
        """The rows at ``index``."""
        return Dataset(self.x[index], self.y[index])


def make_dataset(
    seed: int = 0,
    *,
    train_size: int = 6000,
    test_size: int = 2000,
    num_classes: int = NUM_CLASSES,
    num_features: int = NUM_FEATURES,
    spread: float = 1.5,
) -> tuple[Dataset, Dataset]:
    """Gaussian blobs: class centres ~ N(0, 1) scaled by ``spread`` / sqrt(features)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, num_features)) * spread / np.sqrt(num_features) * 2.0

    def draw(n: int) -> Dataset:
        y = rng.integers(0, num_classes, size=n).astype(np.int64)
        x = centres[y] + rng.normal(size=(n, num_features))
        return Dataset(x.astype(np.float64), y)

    return draw(train_size), draw(test_size)


def partition(
    data: Dataset, num_partitions: int, *, alpha: float = 0.5, seed: int = 0
) -> list[IntArray]:
    """Split row indices into ``num_partitions`` non-IID parts (Dirichlet label skew)."""
    if num_partitions < 1:
        raise ValueError("num_partitions must be >= 1")
    rng = np.random.default_rng(seed + 1)
    parts: list[list[int]] = [[] for _ in range(num_partitions)]
    for label in np.unique(data.y):
        rows = np.flatnonzero(data.y == label)
        rng.shuffle(rows)
        shares = rng.dirichlet(np.full(num_partitions, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for part, chunk in zip(parts, np.split(rows, cuts), strict=True):
            part.extend(int(i) for i in chunk)
    return [np.asarray(sorted(p), dtype=np.int64) for p in parts]


def client_data(partition_id: int, num_partitions: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """One client's local train and test split (80/20 of its non-IID share)."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition_id must be in 0..{num_partitions - 1}, got {partition_id}")
    train, _ = make_dataset(seed)
    index = partition(train, num_partitions, seed=seed)[partition_id]
    rng = np.random.default_rng(seed + 100 + partition_id)
    index = rng.permutation(index)
    cut = int(len(index) * 0.8)
    return train.subset(index[:cut]), train.subset(index[cut:])


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return result


class LogisticRegression:
    """Multinomial logistic regression: ``softmax(x @ W + b)``."""

    def __init__(self, num_features: int = NUM_FEATURES, num_classes: int = NUM_CLASSES) -> None:
        self.weights: FloatArray = np.zeros((num_features, num_classes))
        self.bias: FloatArray = np.zeros(num_classes)

    def get_weights(self) -> list[npt.NDArray[np.float64]]:
        """``[W, b]`` (copies)."""
        return [self.weights.copy(), self.bias.copy()]

    def set_weights(self, weights: list[npt.NDArray[np.generic]]) -> None:
        """Load ``[W, b]``."""
        w, b = weights
        self.weights = np.array(w, dtype=np.float64).reshape(self.weights.shape)
        self.bias = np.array(b, dtype=np.float64).reshape(self.bias.shape)

    def loss_and_accuracy(self, data: Dataset) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``data``."""
        if len(data) == 0:
            return 0.0, 0.0
        probs = _softmax(data.x @ self.weights + self.bias)
        picked = probs[np.arange(len(data)), data.y]
        loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
        accuracy = float(np.mean(np.argmax(probs, axis=1) == data.y))
        return loss, accuracy

    def fit(
        self, data: Dataset, *, epochs: int, lr: float, batch_size: int = 32, seed: int = 0
    ) -> float:
        """Mini-batch SGD; returns the mean training loss of the last epoch."""
        rng = np.random.default_rng(seed)
        n = len(data)
        last = 0.0
        for _ in range(epochs):
            order = rng.permutation(n)
            losses = []
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                x, y = data.x[rows], data.y[rows]
                probs = _softmax(x @ self.weights + self.bias)
                losses.append(
                    float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))
                )
                probs[np.arange(len(y)), y] -= 1.0
                probs /= len(y)
                self.weights -= lr * (x.T @ probs)
                self.bias -= lr * probs.sum(axis=0)
            last = float(np.mean(losses)) if losses else 0.0
        return last
