"""paas: a Heroku-style micro-PaaS. `git push` → buildpacks → runc dynos → nginx."""

import sys

# httpx imports its command-line client when click, rich and pygments are installed (Celery
# brings click; rich comes with the dev tools): ~5 MiB in every process that uses httpx. No
# paas process runs that client; httpx falls back to a stub on this ImportError.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
