"""Alembic environment: runs on the connection the `migrate` command hands over (see service_common.storage)."""

from alembic import context

from order_service.storage import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
