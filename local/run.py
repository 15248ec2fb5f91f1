"""`make run`: both services on their own SQLite files under ./data/, plus the order recovery worker,
in the foreground. Ctrl-C or SIGTERM stops everything cleanly.

Honours ORDER_DATABASE_URL, INVENTORY_DATABASE_URL, ORDER_PORT, INVENTORY_PORT, SERVICE_TOKEN and
ADMIN_TOKEN. Without tokens it generates them once and keeps them in ./data/tokens.env (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path

if not __package__:  # run as a script (`make run`): make the `local` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.processes import ServiceProcess, migrate

ROOT = Path(__file__).resolve().parent.parent
# DATA_DIR moves it elsewhere (the tests do, to leave ./data alone).
DATA = Path(os.environ.get("DATA_DIR") or ROOT / "data").resolve()
TOKENS = DATA / "tokens.env"


def load_tokens() -> dict[str, str]:
    """SERVICE_TOKEN and ADMIN_TOKEN from the environment, else from ./data/tokens.env (made once)."""
    DATA.mkdir(exist_ok=True)
    stored: dict[str, str] = {}
    if TOKENS.exists():
        for line in TOKENS.read_text().splitlines():
            name, _, value = line.partition("=")
            if value:
                stored[name.strip()] = value.strip()
    missing = [n for n in ("SERVICE_TOKEN", "ADMIN_TOKEN") if n not in stored]
    if missing:
        for name in missing:
            stored[name] = secrets.token_urlsafe(32)
        fd = os.open(TOKENS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in stored.items())
    os.chmod(TOKENS, 0o600)
    return {name: os.environ.get(name) or stored[name] for name in ("SERVICE_TOKEN", "ADMIN_TOKEN")}


def main() -> int:
    DATA.mkdir(exist_ok=True)
    tokens = load_tokens()
    inventory_port = os.environ.get("INVENTORY_PORT", "5001")
    order_port = os.environ.get("ORDER_PORT", "30000")
    common = {**os.environ, **tokens, "HOST": "127.0.0.1", "DRAIN_SECONDS": "0", "PYTHONUNBUFFERED": "1"}
    inventory_env = {
        **common,
        "DATABASE_URL": os.environ.get("INVENTORY_DATABASE_URL", f"sqlite:///{DATA / 'inventory.db'}"),
        "PORT": inventory_port,
    }
    order_env = {
        **common,
        "DATABASE_URL": os.environ.get("ORDER_DATABASE_URL", f"sqlite:///{DATA / 'orders.db'}"),
        "PORT": order_port,
        "INVENTORY_URL": f"http://127.0.0.1:{inventory_port}",
    }
    migrate("inventory_service", inventory_env)
    migrate("order_service", order_env)
    print(f"tokens: from the environment or {TOKENS} (mode 0600)", flush=True)
    print(f"inventory: http://127.0.0.1:{inventory_port}  order: http://127.0.0.1:{order_port}", flush=True)
    children = [
        ServiceProcess("inventory_service", "serve", inventory_env, None).start(),
        ServiceProcess("order_service", "serve", order_env, None).start(),
        ServiceProcess("order_service", "worker", order_env, None).start(),
    ]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            child.signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(c.alive() for c in children):
        time.sleep(0.2)
    if not stopping:  # one died on its own: take the others down too
        stop(signal.SIGTERM, None)
    deadline = time.monotonic() + 30
    for child in children:
        child.wait(timeout=max(0.1, deadline - time.monotonic()))
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
