"""`python -m order_service serve | migrate | worker | audit | events tail`."""

import sys

import orjson

from order_service import MIGRATIONS, SERVICE, create_app, create_saga
from order_service.audit import audit
from order_service.events_tail import events_command
from order_service.settings import Settings
from order_service.worker import run_forever
from service_common.cli import main
from service_common.domain import DomainError
from service_common.errors import domain_body


def _audit(settings: Settings) -> int:
    """Print the consistency report as JSON; exit 0 when consistent, 1 when not, 2 when it cannot run."""
    try:
        report = audit(create_saga(settings))
    except DomainError as exc:  # inventory unavailable
        print(domain_body(exc).decode(), file=sys.stderr)
        return 2
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if report["consistent"] else 1


if __name__ == "__main__":
    commands = {"worker": lambda s: run_forever(create_saga(s)), "audit": _audit}
    sys.exit(main(SERVICE, Settings, create_app, MIGRATIONS, extra=commands, with_args={"events": events_command}))
