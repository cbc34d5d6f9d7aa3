"""Moved to paas/outputlines.py; kept for paas/runtime/agent.py until it imports it there."""

from paas.outputlines import LINE_LIMIT, READ_LIMIT, cut, read_line

__all__ = ["LINE_LIMIT", "READ_LIMIT", "cut", "read_line"]
