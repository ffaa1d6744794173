from __future__ import annotations

from bulkwatch.cli import main

raise SystemExit(main())
