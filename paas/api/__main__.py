"""`python -m paas.api`: serve the API, the git receiver and the dashboard on loopback."""

from __future__ import annotations

import uvicorn

from paas.api.server import api_server
from paas.settings import load


def main() -> None:
    settings = load()
    uvicorn.run(api_server(settings), host=settings.api_host, port=settings.api_port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
