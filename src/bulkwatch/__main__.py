from __future__ import annotations

from bulkwatch.cli.main import main

raise SystemExit(main())
