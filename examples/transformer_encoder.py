"""Dynamic DropConnect on a torch ``nn.TransformerEncoder``: attention and feed-forward weights.

The task: does token 1 occur more often than token 2 in a sequence of 12 tokens? DDC goes on
every attention projection (``in_proj_weight``, ``out_proj.weight``) and feed-forward layer;
Monte-Carlo prediction gives a predictive spread (PyTorch's fused inference path is turned off
while sampling, so the masks really apply).

    python examples/transformer_encoder.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import dynamic_dropconnect as ddc


class Classifier(nn.Module):
    def __init__(self, vocab: int = 6, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))


def data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, 6, (n, 12), generator=generator)
    return tokens, ((tokens == 1).sum(1) > (tokens == 2).sum(1)).long()


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    (x, y), (x_test, y_test) = data(3000, generator), data(1000, generator)
    torch.manual_seed(0)
    model = Classifier()
    ddc.apply(model, "ddc", include=["*.self_attn", "*.linear1", "*.linear2"])
    print(ddc.summary(model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for epoch in range(6):
        model.train()
        for idx in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean()
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.3f}")
    samples = ddc.mc_predict(model, x_test[:200], n_samples=20, return_samples=True)
    mean = samples.mean(0)
    print(
        f"MC-DDC: accuracy {(mean.argmax(1) == y_test[:200]).float().mean():.3f}, "
        f"mean predictive std {samples.std(0).max(1).values.mean():.4f}"
    )


if __name__ == "__main__":
    main()
