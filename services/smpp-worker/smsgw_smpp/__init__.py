"""smsgw SMPP worker and SMSC simulator (docs/smpp.md).

Entry points: `smsgw_smpp.service.run` (the worker) and `smsgw_smpp.sim.run_simulator`.
"""
