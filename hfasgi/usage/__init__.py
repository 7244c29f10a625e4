"""Usage metering: the meter layer, prices, records and the durable ledger (a disk spool, then a database)."""

from hfasgi.usage.ledger import LedgerStats, UsageLedger
from hfasgi.usage.meter import UsageMeter, UsageMeterConfig
from hfasgi.usage.prices import Price, PriceTable
from hfasgi.usage.record import UsageRecord
from hfasgi.usage.stores import (
    LedgerStore,
    PostgresLedgerStore,
    SQLiteLedgerStore,
    StoreUnavailable,
    UsagePage,
    store_for,
)

__all__ = [
    "LedgerStats",
    "LedgerStore",
    "Price",
    "PriceTable",
    "PostgresLedgerStore",
    "SQLiteLedgerStore",
    "StoreUnavailable",
    "UsageLedger",
    "UsageMeter",
    "UsageMeterConfig",
    "UsagePage",
    "UsageRecord",
    "store_for",
]
