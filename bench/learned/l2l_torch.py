"""The coordinatewise 2x20 LSTM optimizer of examples/l2l.optim written in
PyTorch the way public reproductions of Andrychowicz et al. (2016) write it:
two nn.LSTMCell batched over the coordinates plus nn.Linear. Shared by the
step benchmark (torch_lstm.py) and the meta-training episode benchmark
(torch_meta_episode.py)."""

import math

import torch

K = 10.0  # Preprocessing constant of examples/l2l.optim.
SCALE = 0.1  # Output scale of examples/l2l.optim.
HIDDEN = 20


class L2L(torch.nn.Module):
    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.cell1 = torch.nn.LSTMCell(2, hidden)
        self.cell2 = torch.nn.LSTMCell(hidden, hidden)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, g, state):
        """Returns the update of every coordinate and the new state
        (h1, c1, h2, c2)."""
        h1, c1, h2, c2 = state
        # Appendix A of the paper: (log|g| / k, sign g) if |g| >= e^-k,
        # else (-1, e^k g).
        big = g.abs() >= math.exp(-K)
        x = torch.stack([
            torch.where(big, g.abs().log() / K, torch.full_like(g, -1.0)),
            torch.where(big, g.sign(), g * math.exp(K)),
        ], dim=1)
        h1, c1 = self.cell1(x, (h1, c1))
        h2, c2 = self.cell2(h1, (h2, c2))
        return SCALE * self.head(h2).squeeze(1), (h1, c1, h2, c2)
