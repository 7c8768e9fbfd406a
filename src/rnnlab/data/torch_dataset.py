"""``StockDataset``: the exercise's torch ``Dataset`` of (window, next value) pairs.

Built on the same loaders, scaler and chronological windows as the rest of
rnnlab, so a plain ``torch.utils.data.DataLoader`` over it sees exactly what the
``forecast`` task trains on.  Kept apart from ``data.series`` so that only code
that asks for it imports torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .series import MinMaxScaler, check_points, split_windows


class StockDataset(Dataset):
    """Item ``i``: (window ``[L, 1]`` float32, next value ``[1]`` float32), scaled to [-1, 1].

    ``StockDataset.splits(prices, window)`` returns the train, validation and
    test datasets; all three share the scaler fitted on the training part.
    """

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, scaler: MinMaxScaler):
        self.inputs = torch.as_tensor(inputs, dtype=torch.float32).unsqueeze(-1)  # [N, L, 1]
        self.targets = torch.as_tensor(targets, dtype=torch.float32).unsqueeze(-1)  # [N, 1]
        self.scaler = scaler

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.inputs[i], self.targets[i]

    @classmethod
    def splits(cls, prices, window: int, fractions=(0.7, 0.15, 0.15)) -> dict[str, StockDataset]:
        """``{"train", "val", "test"}`` datasets from a 1-D price series (array or pandas Series)."""
        values = np.asarray(prices, dtype=np.float64)
        n_train, _, _ = check_points(len(values), window, fractions)  # before fitting: too few points is a clear error
        scaler = MinMaxScaler.fit(values[:n_train])
        parts = split_windows(scaler.transform(values), window, fractions)
        return {name: cls(x, y, scaler) for name, (x, y) in parts.items()}
