"""The hello-world ceiling: a Flask app answering tiny JSON, served exactly as the services are (the same
`service_common.serving.serve`: granian, WEB_CONCURRENCY workers x THREADS app threads, keep-alive).

`python -m bench.hello` with HOST, PORT, WEB_CONCURRENCY, THREADS and SCRATCH_DIR from the environment.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Flask


def create_app() -> Flask:
    app = Flask("hello")

    @app.get("/")
    def index() -> dict[str, str]:
        return {"hello": "world"}

    return app


def main() -> None:
    from service_common.serving import serve
    from service_common.settings import ServiceSettings

    port = int(os.environ.get("PORT", "18080"))
    scratch = Path(os.environ.get("SCRATCH_DIR") or Path(tempfile.gettempdir()) / f"bench-hello-{port}")
    serve(
        create_app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=port,
        workers=int(os.environ.get("WEB_CONCURRENCY", "2")),
        threads=int(os.environ.get("THREADS", "8")),
        limits=ServiceSettings(database_url="sqlite://", port=port).limits(),
        drain_flag=scratch / "draining",
        drain_seconds=0,
        graceful_timeout=5,
    )


if __name__ == "__main__":
    main()
