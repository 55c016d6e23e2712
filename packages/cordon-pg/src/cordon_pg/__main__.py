"""``python -m cordon_pg check ...``."""

from __future__ import annotations

import sys

from cordon_pg.cli import main

sys.exit(main())
