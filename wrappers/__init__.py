"""Composable gymnasium wrappers over the vla-gym contract, for users who drive envs with their own loops
(the harness needs none of them).

- :class:`ChunkedActions`: ``step`` takes an action chunk (k, 7) and executes it open-loop.
- :class:`LanguageAsArray`: the ``language`` observation as a fixed-length uint8 array, so gymnasium's
  ``AsyncVectorEnv(shared_memory=True)`` carries it intact (it blanks ``Text`` observations).
"""

from wrappers.chunked import ChunkedActions
from wrappers.language import LanguageAsArray, decode_language

__all__ = ["ChunkedActions", "LanguageAsArray", "decode_language"]
