"""The commissions domain: plans and criteria, the payout arithmetic, statements and their
lines, the month close and the payout workflow. Callers use ``commissions.service``; refusals
are ``commissions.errors``. Imports only ``db`` below it (docs/payouts.md: the rules)."""
