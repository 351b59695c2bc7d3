"""The one exception type the CLI turns into a one-line message."""


class MaeBenchError(Exception):
    """A problem with the user's input (data, checkpoint, recipe) rather than a bug."""
