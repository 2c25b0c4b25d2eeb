"""Tiny random-weight model folders, built offline, in the layouts users bring.

Each kind is a folder sentence-transformers loads as it is (the reference the servers are
compared with): the sentence-transformers 6 format (`pooling_mode`, the limit in
tokenizer_config.json) saved by sentence-transformers itself, and the older format
(`pooling_mode_*_token` booleans, sentence_bert_config.json's max_seq_length) written by hand.
BERT-like folders reuse the bundled model's tokenizer; XLM-R and MPNet get a small Unigram
tokenizer trained here, with RoBERTa's special tokens (<s>=0, <pad>=1, </s>=2).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embbench.config.model import bundled_model_path

HIDDEN = 32
SMALL = {
    "hidden_size": HIDDEN,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
# Enough tokens for the export's examples (ids 1000-2000) whatever the tokenizer's size.
ROBERTA_VOCAB = 2100

TEXT = (
    "the quick brown fox jumps over a lazy dog while embedding servers answer queries about "
    "vectors tokens batches latency throughput models pooling prompts and long documents that "
    "go past every limit of position embeddings in small and large transformer encoders"
)
WORDS = TEXT.split(" ")


def _hf_bert(folder: Path, max_positions: int = 512) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(1)
    config = BertConfig(vocab_size=30522, max_position_embeddings=max_positions, **SMALL)
    BertModel(config).save_pretrained(folder)
    tokenizer = BertTokenizerFast(tokenizer_file=str(bundled_model_path() / "tokenizer.json"))
    tokenizer.save_pretrained(folder)


def _hf_distilbert(folder: Path) -> None:
    import torch
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    torch.manual_seed(2)
    config = DistilBertConfig(
        vocab_size=30522, dim=HIDDEN, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=512,
    )  # fmt: skip
    DistilBertModel(config).save_pretrained(folder)
    tokenizer = BertTokenizerFast(tokenizer_file=str(bundled_model_path() / "tokenizer.json"))
    tokenizer.save_pretrained(folder)


def roberta_tokenizer(model_max_length: int | None = None) -> Any:
    """A Unigram tokenizer with <s> A </s>, trained on WORDS (works offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>")
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )  # fmt: skip
    kwargs: dict[str, Any] = {}
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>", **kwargs,
    )  # fmt: skip


def _hf_xlmr(folder: Path) -> None:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(3)
    config = XLMRobertaConfig(
        vocab_size=ROBERTA_VOCAB, max_position_embeddings=514, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, type_vocab_size=1, **SMALL,
    )  # fmt: skip
    XLMRobertaModel(config).save_pretrained(folder)
    # No model_max_length: transformers' "unlimited" sentinel; the positions decide (512).
    roberta_tokenizer().save_pretrained(folder)


def _hf_mpnet(folder: Path) -> None:
    import torch
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(4)
    config = MPNetConfig(
        vocab_size=ROBERTA_VOCAB, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, **SMALL,
    )  # fmt: skip
    MPNetModel(config).save_pretrained(folder)
    roberta_tokenizer(model_max_length=384).save_pretrained(folder)


HF = {"bert": _hf_bert, "distilbert": _hf_distilbert, "xlmr": _hf_xlmr, "mpnet": _hf_mpnet}


def st6_folder(
    out: Path,
    base: str,
    pooling: str | tuple[str, ...] = "mean",
    *,
    normalize: bool = False,
    dense: int | None = None,
    max_seq_length: int | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
) -> Path:
    """A folder saved by sentence-transformers 6 (pooling_mode, limit in tokenizer_config)."""
    import torch
    from sentence_transformers import SentenceTransformer, models

    hf = out.with_name(out.name + "-hf")
    HF[base](hf)
    transformer = models.Transformer(str(hf), max_seq_length=max_seq_length)
    modules: list[Any] = [transformer, models.Pooling(HIDDEN, pooling_mode=pooling)]
    width = HIDDEN * (1 if isinstance(pooling, str) else len(pooling))
    if dense:
        torch.manual_seed(5)
        modules.append(models.Dense(width, dense, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(models.Normalize())
    model = SentenceTransformer(
        modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu"
    )
    model.save(str(out))
    shutil.rmtree(hf)
    return out


def old_folder(
    out: Path, pooling: str = "mean", *, normalize: bool = True, max_seq_length: int = 256
) -> Path:
    """The older format, as sentence-transformers 2.x wrote it (the bundled model's layout)."""
    _hf_bert(out)
    old = "sentence_transformers.models."
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": old + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": old + "Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}
        )  # fmt: skip
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir()
    flags = {
        "word_embedding_dimension": HIDDEN,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": pooling == "mean_sqrt_len_tokens",
    }
    (out / "1_Pooling" / "config.json").write_text(json.dumps(flags, indent=2))
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    (out / "config_sentence_transformers.json").write_text(
        json.dumps({"__version__": {"sentence_transformers": "2.0.0"}})
    )
    return out


# name -> how to build it; the names are the rows of the table.
KINDS: dict[str, Callable[[Path], Path]] = {
    "bert-cls-st6": lambda p: st6_folder(p, "bert", "cls", normalize=True),
    "bert-mean-st6-256": lambda p: st6_folder(p, "bert", "mean", max_seq_length=256),
    "bert-cls-old": lambda p: old_folder(p, "cls", max_seq_length=128),
    "bert-mean-old-256": lambda p: old_folder(p, "mean", max_seq_length=256),
    "distilbert-mean": lambda p: st6_folder(p, "distilbert", "mean", normalize=True),
    "mpnet-mean": lambda p: st6_folder(p, "mpnet", "mean", normalize=True),
    "xlmr-mean": lambda p: st6_folder(p, "xlmr", "mean", normalize=True),
    "bert-dense-prompt": lambda p: st6_folder(
        p,
        "bert",
        "mean",
        normalize=True,
        dense=16,
        prompts={"query": "query: ", "passage": "passage: "},
        default_prompt_name="query",
    ),
}
# More poolings (torch only: the transformer's graph is the same as above).
POOLING_KINDS: dict[str, Callable[[Path], Path]] = {
    f"bert-{mode}": (lambda m: lambda p: st6_folder(p, "bert", m))(mode)
    for mode in ("max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
}
POOLING_KINDS["bert-cls+mean"] = lambda p: st6_folder(p, "bert", ("cls", "mean"), dense=8)


def long_text(words: int = 1400) -> str:
    """Far past any limit here: 1400 words are at least 1400 tokens."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


INPUTS = [
    "What is the capital of France?",
    "embedding",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    long_text(),
]
