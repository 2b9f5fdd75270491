"""An AWD-LSTM-style character language model with Dynamic DropConnect on ``weight_hh_l0``.

Merity et al. (2017) drop the LSTM's hidden-to-hidden weights (DropConnect); here the rate of
each recurrent edge follows its gradient (DDC), or is fixed (``--method dropconnect``). The
corpus is the Zen of Python, which ships with every Python (``import this``), so this runs
offline; it is tiny, so read the numbers as a demonstration, not a benchmark.

    python examples/awd_lstm.py [--method ddc|dropconnect|none] [--epochs 30]
"""

from __future__ import annotations

import argparse
import codecs
import math

import torch
import torch.nn.functional as F
from torch import nn

import dynamic_dropconnect as ddc


def corpus() -> str:
    import this  # prints the Zen once on import; its text is this.s, in ROT13

    return codecs.decode(this.s, "rot13")


class CharLM(nn.Module):
    def __init__(self, vocab: int, dim: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(tokens))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="ddc", choices=["ddc", "dropconnect", "none"])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    text = corpus()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    split = int(0.9 * len(ids))
    train, valid = ids[:split], ids[split - 32 :]
    torch.manual_seed(0)
    model = CharLM(len(chars))
    if args.method != "none":
        # AWD-LSTM's weight drop: the recurrent matrix only (a module pattern on an LSTM
        # selects its weight_hh_l*). ddc.AWDWeightDrop(model.rnn, ["weight_hh_l0"], 0.5) is the
        # same in AWD-LSTM's own call form.
        ddc.apply(model, args.method, include="rnn", p=0.3 if args.method == "ddc" else 0.5)
    print(ddc.summary(model))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    windows = train.unfold(0, 33, 16)  # (n, 33): input 32 characters, predict the next ones
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(windows)).split(16):
            batch = windows[idx]
            optimizer.zero_grad(set_to_none=True)
            logits = model(batch[:, :-1])
            F.cross_entropy(logits.reshape(-1, len(chars)), batch[:, 1:].reshape(-1)).backward()
            optimizer.step()
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            model.eval()
            with torch.no_grad():
                logits = model(valid[None, :-1])
                loss = F.cross_entropy(logits[0, 31:], valid[32:])  # after 32 chars of context
            print(f"epoch {epoch + 1}: validation perplexity {math.exp(loss):.2f} per character")


if __name__ == "__main__":
    main()
