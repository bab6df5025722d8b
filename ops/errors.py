"""The two ways the tool refuses: bad input (nothing was done) and a failed operation."""


class UsageError(Exception):
    """Bad command-line input or stack identity; raised before anything on the stack changes.
    The message is one line naming the argument and what is allowed."""


class OpsError(Exception):
    """An operation on the stack failed; the message says which and where."""
