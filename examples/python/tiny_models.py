"""Two small modules of your own, to export with edgesdk (the bring-your-own path).

    edgesdk export examples.python.tiny_models:classifier --input features=1x40x17 -o out/classifier
    edgesdk export examples.python.tiny_models:streaming_classifier \
        --input features=1x1x40 --state conv_buffer=1x2x40 --state hidden=1x64 -o out/streaming
"""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Stateless: a 1-D conv over [batch, features, frames], mean-pooled, then a linear head."""

    def __init__(self, features: int = 40, channels: int = 64, classes: int = 12):
        super().__init__()
        self.conv = nn.Conv1d(features, channels, kernel_size=3, padding=1)
        self.head = nn.Linear(channels, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv(features))
        return self.head(hidden.mean(dim=-1))


class StreamingClassifier(nn.Module):
    """One step of a causal conv + gated recurrence, state in and state out.

    forward(features [B, 1, F], conv_buffer [B, K-1, F], hidden [B, H])
        -> (logits [B, C], conv_buffer_next, hidden_next)
    The conv buffer holds the last K-1 frames, so the step equals a causal conv over the stream.
    """

    def __init__(self, features: int = 40, kernel: int = 3, hidden: int = 64, classes: int = 12):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(features, hidden, kernel_size=kernel)
        self.update = nn.Linear(2 * hidden, hidden)
        self.candidate = nn.Linear(2 * hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, features: torch.Tensor, conv_buffer: torch.Tensor, hidden: torch.Tensor):
        window = torch.cat([conv_buffer, features], dim=1)  # [B, K, F], oldest first
        frame = torch.relu(self.conv(window.transpose(1, 2))).squeeze(-1)  # [B, H]
        joint = torch.cat([frame, hidden], dim=-1)
        gate = torch.sigmoid(self.update(joint))
        hidden_next = (1 - gate) * hidden + gate * torch.tanh(self.candidate(joint))
        return self.head(hidden_next), window[:, 1:], hidden_next


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return Classifier().eval()


def streaming_classifier() -> nn.Module:
    torch.manual_seed(0)
    return StreamingClassifier().eval()
