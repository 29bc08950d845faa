"""rxllm's operators: pure Rx operators over provider event streams.

Each public function here owns the documentation (a marble diagram and an example) and
imports its implementation lazily from a private module.
"""

from __future__ import annotations

__all__: list[str] = []
