"""The ``crm-train`` console script: ``models.train_cli`` with the synthetic world as its data source.

``models`` may not import the tools, so the world is handed to it here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from models import train_cli


def synthetic(count: int, seed: int) -> tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]:
    from producer_tools.world import generate

    batch = generate(count, seed)
    return batch.events, batch.truth


def main(argv: list[str] | None = None) -> int:
    return train_cli.main(argv, synthetic=synthetic)


if __name__ == "__main__":
    sys.exit(main())
