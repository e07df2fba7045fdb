"""The one exception type prunekit raises for user mistakes.

Every message is a single line that names the culprit and says how to fix it; the CLI prints it
and exits with status 2.
"""


class PrunekitError(Exception):
    """A user-facing error: bad name, bad config, bad data, incompatible checkpoint, ..."""
