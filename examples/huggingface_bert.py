"""Dynamic DropConnect on a Hugging Face model: a tiny BERT classifier built from a config.

Needs ``pip install dynamic-dropconnect[huggingface]``; nothing is downloaded. DDC goes on the
attention and intermediate (feed-forward) weights; ``mc_predict`` takes the tokenizer-style
dict batch and the model's ``SequenceClassifierOutput``; the checkpoint is saved without the
DDC statistic, so ``from_pretrained`` loads it into the plain architecture.

    python examples/huggingface_bert.py
"""

from __future__ import annotations

import sys
import tempfile

import torch

import dynamic_dropconnect as ddc

try:
    import transformers
except ImportError:
    sys.exit("this example needs transformers: pip install 'dynamic-dropconnect[huggingface]'")


def data(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 50, (n, 10), generator=generator)
    labels = (ids < 20).sum(1).clamp(max=2)  # how many "small" tokens: 0, 1, or 2+
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def main() -> None:
    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=50, num_labels=3, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    ddc.apply(model, "ddc", include=["*.attention.*", "*.intermediate.dense"])
    print(ddc.summary(model))
    generator = torch.Generator().manual_seed(0)
    train, test = data(2000, generator), data(500, generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for epoch in range(4):
        model.train()
        for idx in torch.randperm(2000, generator=generator).split(32):
            optimizer.zero_grad(set_to_none=True)
            model(**{k: v[idx] for k, v in train.items()}).loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=test["input_ids"], attention_mask=test["attention_mask"])
        accuracy = (logits.logits.argmax(1) == test["labels"]).float().mean()
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.3f}")
    batch = {"input_ids": test["input_ids"][:100], "attention_mask": test["attention_mask"][:100]}
    probs = ddc.mc_predict(model, batch, n_samples=20)
    mc_accuracy = (probs.argmax(1) == test["labels"][:100]).float().mean()
    print(f"MC-DDC accuracy on 100 test sequences: {mc_accuracy:.3f}")
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, state_dict=ddc.plain_state_dict(model))
        plain = transformers.BertForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            same = torch.equal(plain(**batch).logits, model(**batch).logits)
        print(f"from_pretrained of the plain checkpoint gives the same eval logits: {same}")


if __name__ == "__main__":
    main()
