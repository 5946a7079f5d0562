"""A streaming step whose new state comes from its input, so a wrongly declared state shape
still runs once (broadcasting) and only the returned state shows the mistake."""
from __future__ import annotations

import torch


class ProjectedState(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.project = torch.nn.Linear(8, 16)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.sum(-1, keepdim=True), h + self.project(x)
