class SourceUnavailableError(ConnectionError):
    """A source database could not be reached. The message never holds a password."""
