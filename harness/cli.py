"""Command-line conveniences shared by the harness's Hydra entry points."""

from __future__ import annotations

import sys

# Characters that mean the value already uses Hydra's grammar (quotes, lists, dicts, sweeps, functions).
_GRAMMAR = set("'\"()[]{}")


def quote_values_with_equals(argv: list[str]) -> list[str]:
    """``key=a=b`` -> ``key="a=b"``: Hydra's override grammar stops at a value's ``=``, and the paper's
    checkpoints are named ``epoch=N-step=M.pt``. Values that already use Hydra's grammar are left alone."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and "=" in value and not (_GRAMMAR & set(value)):
            arg = f'{key}="{value}"'
        out.append(arg)
    return out


def run_hydra_main(main: object) -> None:
    """Call a ``@hydra.main`` function with the command line's ``=``-holding values quoted."""
    sys.argv[1:] = quote_values_with_equals(sys.argv[1:])
    main()  # type: ignore[operator]
