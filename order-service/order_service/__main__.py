"""`python -m order_service serve | migrate | worker`."""

import sys

from order_service import MIGRATIONS, SERVICE, create_app, create_saga
from order_service.settings import Settings
from order_service.worker import run_forever
from service_common.cli import main

if __name__ == "__main__":
    sys.exit(main(SERVICE, Settings, create_app, MIGRATIONS, extra={"worker": lambda s: run_forever(create_saga(s))}))
