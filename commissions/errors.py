"""What the commissions domain refuses, in words a client can act on. The edge maps each to
its GraphQL code and HTTP status (``schema/errors.py``, ``web/errors.py``); the domain knows
nothing of either."""

from __future__ import annotations


class CommissionError(ValueError):
    """A request the commissions domain refuses; ``code`` is the client-facing class."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCommissionInput(CommissionError):
    """An argument is wrong: a month not over, an amount out of range, an unknown plan."""


class WorkflowConflict(CommissionError):
    """The statement or validation is not in a state that allows this step (e.g. approving
    a statement that is not closed). Reported as bad input, as the API always has."""
