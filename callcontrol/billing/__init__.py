"""Billing: rate files, the wallet and its ledger, and the charging service.

    errors.py      RatesFileError, NoRate, InsufficientCredits, ChargeRefused
    rates_file.py  CSV / YAML rate files, validated whole (file:line errors)
    wallet.py      Wallet: credits, holds, call charges, release, audit (atomic SQL)
    service.py     ChargingService: cached rates + quote + the wallet, for the call path

The arithmetic (money, rating, charging slices) is pure and lives in
``callcontrol.domain``; the SQL in ``callcontrol.store.wallet`` (one store per
database) and ``callcontrol.store.rates``.
"""
