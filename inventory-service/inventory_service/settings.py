"""Inventory settings: the shared ones (service_common.settings) with this service's defaults."""

from __future__ import annotations

from pydantic import Field

from service_common.settings import ServiceSettings, SpareThreads


class Settings(ServiceSettings):
    database_url: str = Field("sqlite:///data/inventory.db", description="Inventory's own database.")
    port: int = Field(5001, description="Port the inventory service listens on.")
    # A reserve's thread mostly waits in the group commit, and a batch holds no more reserves than the threads
    # waiting in it: spare threads let it gather more (docs/decisions.md, "Spare threads").
    spare_threads: SpareThreads = 16
    max_restock: int = Field(1_000_000_000, ge=1, description="Largest quantity one restock may add.")
    ledger_retention_hours: float = Field(
        720.0, gt=0, description="Age after which stock ledger rows are folded into their product's balance row."
    )
    ledger_fold_batch: int = Field(1000, ge=1, description="Ledger rows one fold transaction folds at most.")
    reserve_batch_max: int = Field(
        64,
        ge=1,
        le=1000,
        description="Most reserves one transaction may hold: concurrent reserves in a process share one commit "
        "(group commit). 1 turns batching off: each reserve runs alone, in its own request thread.",
    )
