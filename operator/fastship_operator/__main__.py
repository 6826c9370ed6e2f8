"""``python -m fastship_operator``: run the operator in one namespace."""

from __future__ import annotations

import sys

from fastship_operator.main import main

if __name__ == "__main__":
    sys.exit(main())
