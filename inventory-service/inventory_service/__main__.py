"""`python -m inventory_service serve | migrate`."""

import sys

from inventory_service import MIGRATIONS, SERVICE, create_app
from inventory_service.settings import Settings
from service_common.cli import main

if __name__ == "__main__":
    sys.exit(main(SERVICE, Settings, create_app, MIGRATIONS))
