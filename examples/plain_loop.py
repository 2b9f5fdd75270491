"""Dynamic DropConnect in a plain PyTorch training loop.

Two lines change a normal script: ``ddc.apply(model)`` before training, nothing else. This one
trains an MLP on a synthetic 3-class problem and prints what DDC did.

    python examples/plain_loop.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import dynamic_dropconnect as ddc


def data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 20, generator=generator)
    y = (x[:, :3].sum(1) > 0.5).long() + (x[:, 3:6].sum(1) > 0.5).long()
    return x, y


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    (x, y), (x_test, y_test) = data(2000, generator), data(1000, generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 3))
    ddc.apply(model, "ddc", include="0", p=0.3, pg=0.5)  # the first layer, as in the paper
    print(ddc.summary(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(20):
        model.train()
        for idx in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()  # DDC records |dL/dW| here
            optimizer.step()
        if epoch % 5 == 4:
            stats = ddc.drop_stats(model)["0"]
            model.eval()  # eval: the plain weights, no mask
            with torch.no_grad():
                accuracy = (model(x_test).argmax(1) == y_test).float().mean()
            print(
                f"epoch {epoch + 1:2d}: test accuracy {accuracy:.3f}, drop rate "
                f"{stats['drop_rate']:.3f}, mean p_ij {stats['next_mean_drop_prob']:.3f}, "
                f"edges above p {stats['extra_drop_fraction']:.2f}"
            )
    probs = ddc.mc_predict(model, x_test[:5], n_samples=30)  # MC-DDC predictive mean
    print("MC-DDC class probabilities of 5 test points:\n", probs.numpy().round(3))
    ddc.remove(model)  # a plain nn.Sequential again, trained weights kept
    print("after remove:", [type(m).__name__ for m in model])


if __name__ == "__main__":
    main()
