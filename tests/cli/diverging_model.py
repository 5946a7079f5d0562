"""A module the CLI can import by name (``tests.cli.diverging_model:Diverging``) that computes
something else while being exported, so validation must fail (exit 4)."""
from __future__ import annotations

import torch


class Diverging(torch.nn.Module):
    def forward(self, x):
        if torch.compiler.is_exporting():
            return x * 2.0 + 1.0
        return x * 2.0
