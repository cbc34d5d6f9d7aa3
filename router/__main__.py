from __future__ import annotations

from router.service import main

main()
