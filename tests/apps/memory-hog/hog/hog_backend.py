"""A PEP 517 build backend that allocates (and touches) 64 MB chunks until it is stopped."""

import sys


def get_requires_for_build_wheel(config_settings=None):
    print("hog: loading the whole world into memory", file=sys.stderr, flush=True)
    chunks = []
    while len(chunks) < 1024:  # 64 GB: far above any build limit
        chunks.append(b"x" * (64 * 1024 * 1024))
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise SystemExit("never reached")
