"""The one exception type for mistakes a user can fix (bad flags, files, checkpoints).

The command line prints its message on one line and exits with code 2; a
library caller catches it like any other exception.
"""


class UserError(Exception):
    """A problem with the user's input; the message says what is wrong and what to do."""


class TrainingDiverged(UserError):
    """The loss became non-finite; the last good checkpoint was kept."""
